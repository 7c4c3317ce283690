//! `runbookd run NAME`: run a runbook once, now, in this process; stream its
//! log; record it like any other run.

use std::sync::Arc;

use chrono::DateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Env, Exit, Failure, Outcome};
use crate::cli::RunArgs;
use crate::output::{clock_time, elapsed};
use crate::run::{Clock, Executor, Intake, RunEvent, RunRequest, TriggerInfo, bind_cli_params};
use crate::script::Sandbox;
use crate::store::{Access, RunStatus, StoreError};

pub async fn run(env: &Env, sandbox: Arc<Sandbox>, args: RunArgs) -> Outcome {
    let loaded = env.load_runbooks(sandbox.clone());
    let rb = find(env, &loaded, &args.name)?;
    let params = bind_cli_params(&rb, &args.params).map_err(|problems| {
        Failure::new(Exit::Usage, problems.join("; ")).hint(format!(
            "runbook {} takes: {}",
            rb.name,
            describe_params(&rb)
        ))
    })?;
    let clock = clock(args.now.as_deref())?;
    let store = crate::store::open(&env.config.database, Access::Exclusive).await?;
    crate::clock::align(store.as_ref()).await;
    let (effects, mailer) = crate::run::build_effects(&env.config, &store, &env.secrets)
        .map_err(|e| Failure::new(Exit::Unavailable, format!("{e:#}")))?;
    let executor = Executor::new(store, sandbox, env.secrets.clone(), env.config.timezone, 1)
        .with_effects(effects);
    // Runs a stopped process left behind wait, queued, for the daemon, as
    // they would after its own restart.
    let runbooks = loaded.runbooks.clone();
    let lookup = move |name: &str| runbooks.iter().find(|r| r.name == name).cloned();
    let r = crate::run::recover(executor.store().as_ref(), &lookup).await?;
    if r.interrupted > 0 {
        eprintln!(
            "note: {} run(s) left running by a stopped process were interrupted; {} queued again for the daemon, {} abandoned",
            r.interrupted, r.queued, r.abandoned
        );
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut req = RunRequest::new(
        rb.clone(),
        TriggerInfo::manual(),
        params,
        &CancellationToken::new(),
    );
    req.clock = clock;
    req.dry_run = args.dry_run;
    req.events = (!args.json).then_some(tx);
    let cancel = req.cancel.clone();
    let intake = Intake::start(executor.store().clone(), None);
    let run_id = intake.submit(&req).await.map_err(|e| match e {
        StoreError::Conflict(m) => Failure::new(Exit::Failed, m)
            .hint("`runbookd runs --status queued` and `--status running` show it"),
        other => other.into(),
    })?;
    if !args.json {
        println!(
            "run {run_id} of {} (version {})",
            rb.name,
            &rb.version.hash[..12]
        );
    }
    let started = chrono::Utc::now();
    let printer = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            print_event(&ev);
        }
    });
    let interrupt = tokio::spawn(watch_interrupts(cancel));
    let outcome = executor.execute(run_id, req).await;
    interrupt.abort();
    // Deliver what this run queued now, rather than when a daemon next runs.
    if let Some(m) = &mailer {
        while m.pass().await > 0 {}
    }
    let _ = printer.await;
    report(&args, &executor, run_id, started, &outcome).await
}

/// The clock of the run: real time, or real time from `--now`.
fn clock(now: Option<&str>) -> Result<Clock, Failure> {
    let Some(t) = now else {
        return Ok(Clock::real());
    };
    let start = DateTime::parse_from_rfc3339(t).map_err(|_| {
        Failure::new(
            Exit::Usage,
            format!("--now \"{t}\" is not an RFC 3339 time"),
        )
        .hint("write it like 2026-03-08T09:00:00Z")
    })?;
    Ok(Clock::starting_at(start.to_utc()))
}

/// The runbook asked for, enabled and loaded without errors.
fn find(
    env: &Env,
    loaded: &crate::runbook::Loaded,
    name: &str,
) -> Result<Arc<crate::runbook::Runbook>, Failure> {
    let Some(rb) = loaded.runbooks.iter().find(|r| r.name == name).cloned() else {
        return Err(not_found(env, loaded, name));
    };
    if !rb.enabled {
        return Err(
            Failure::new(Exit::Usage, format!("runbook {} is disabled", rb.name)).hint(format!(
                "enable it in runbookd.yaml (runbooks: {{ {}: {{ enabled: true }} }}), or set `enabled: true` in {}",
                rb.name,
                rb.path.display()
            )),
        );
    }
    if !loaded.errors.is_empty() {
        eprintln!(
            "note: {} other runbook file(s) have errors; `runbookd check` lists them",
            loaded.failed.len()
        );
    }
    Ok(rb)
}

/// Why `name` cannot run: its file has errors, or there is no such runbook.
fn not_found(env: &Env, loaded: &crate::runbook::Loaded, name: &str) -> Failure {
    if loaded.failed.iter().any(|(_, n)| *n == name) {
        for e in &loaded.errors {
            eprintln!("{e}");
        }
        return Failure::new(
            Exit::Usage,
            format!("runbook {name} has errors and cannot run"),
        )
        .hint("fix the errors above; `runbookd check` lists them");
    }
    let names: Vec<&str> = loaded.runbooks.iter().map(|r| r.name.as_str()).collect();
    let hint = crate::runbook::did_you_mean(name, names.iter().copied()).unwrap_or_else(|| {
        format!(
            "`runbookd check` lists the runbooks in {}",
            env.config.runbooks.display()
        )
    });
    Failure::new(
        Exit::Usage,
        format!(
            "there is no runbook named \"{name}\" in {}",
            env.config.runbooks.display()
        ),
    )
    .hint(hint)
}

/// Print how the run ended (or its record, with `--json`); the exit code
/// says whether it succeeded.
async fn report(
    args: &RunArgs,
    executor: &Executor,
    run_id: crate::store::RunId,
    started: chrono::DateTime<chrono::Utc>,
    outcome: &crate::run::Outcome,
) -> Outcome {
    if args.json {
        let detail = executor.store().run_detail(run_id).await?;
        println!("{}", serde_json::to_string_pretty(&detail).expect("json"));
    } else {
        let took = elapsed(started, Some(chrono::Utc::now()));
        match &outcome.error {
            None => println!("run {run_id} {} in {took}", outcome.status),
            Some(e) => println!("run {run_id} {} after {took}: {e}", outcome.status),
        }
        if let Some(out) = outcome.output.as_ref().filter(|o| !o.is_null()) {
            println!(
                "output: {}",
                serde_json::to_string_pretty(out).expect("json")
            );
        }
    }
    if let Some(e) = &outcome.record_error {
        return Err(Failure::new(
            Exit::Unavailable,
            format!("run {run_id} could not be fully recorded: {e}"),
        ));
    }
    Ok(if outcome.status == RunStatus::Succeeded {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

fn describe_params(rb: &crate::runbook::Runbook) -> String {
    if rb.params.is_empty() {
        return "no params".into();
    }
    rb.params
        .iter()
        .map(|p| {
            format!(
                "{} ({}{})",
                p.name,
                p.kind.as_str(),
                if p.required { ", required" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_event(ev: &RunEvent) {
    match ev {
        RunEvent::Log(l) => {
            let step = l
                .step
                .as_deref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default();
            println!(
                "{} {:<5}{step} {}",
                clock_time(l.at),
                l.level.to_uppercase(),
                l.message
            );
        }
        RunEvent::AttemptStarted { attempt } if *attempt > 1 => println!("attempt {attempt}"),
        RunEvent::AttemptStarted { .. } => {}
        RunEvent::StepFinished {
            name,
            status,
            millis,
        } => {
            let took = crate::duration::human(std::time::Duration::from_millis(*millis));
            println!("step {name} {status} ({took})");
        }
    }
}

/// The first Ctrl-C cancels the run (it is recorded as cancelled); a second
/// one exits at once.
async fn watch_interrupts(cancel: CancellationToken) {
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("cancelling the run; press Ctrl-C again to exit at once");
        cancel.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    }
}
