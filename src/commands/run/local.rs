//! A run performed by this process, on a database no daemon holds.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::print::{Ended, print_end, print_event, print_start};
use crate::cli::RunArgs;
use crate::commands::{Env, Exit, Failure, Outcome};
use crate::run::{Clock, Executor, Intake, RunRequest, TriggerInfo};
use crate::runbook::{Loaded, Runbook};
use crate::script::Sandbox;
use crate::store::{Store, StoreError};

/// What to run: the runbook, its bound params, the run's clock.
pub struct Asked {
    pub rb: Arc<Runbook>,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub clock: Clock,
}

pub async fn run(
    env: &Env,
    sandbox: Arc<Sandbox>,
    store: Arc<dyn Store>,
    loaded: &Loaded,
    asked: Asked,
    args: &RunArgs,
) -> Outcome {
    crate::clock::align(store.as_ref()).await;
    let (effects, mailer) = crate::run::build_effects(&env.config, &store, &env.secrets)
        .map_err(|e| Failure::new(Exit::Unavailable, format!("{e:#}")))?;
    let executor = Executor::new(store, sandbox, env.secrets.clone(), env.config.timezone, 1)
        .with_effects(effects);
    recover(&executor, loaded).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut req = RunRequest::new(
        asked.rb.clone(),
        TriggerInfo::manual(),
        asked.params,
        &CancellationToken::new(),
    );
    req.clock = asked.clock;
    req.dry_run = args.dry_run;
    req.events = (!args.json).then_some(tx);
    let cancel = req.cancel.clone();
    let intake = Intake::start(executor.store().clone(), None);
    let run_id = intake.submit(&req).await.map_err(|e| match e {
        StoreError::Conflict(m) => super::print::conflict(m),
        other => other.into(),
    })?;
    if !args.json {
        print_start(run_id, &asked.rb.name, &asked.rb.version.hash);
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
    let detail = match args.json {
        true => executor.store().run_detail(run_id).await?,
        false => None,
    };
    let ended = Ended {
        run_id,
        status: outcome.status,
        error: outcome.error,
        output: outcome.output,
    };
    let exit = print_end(&ended, started, detail.as_ref());
    if let Some(e) = &outcome.record_error {
        return Err(Failure::new(
            Exit::Unavailable,
            format!("run {run_id} could not be fully recorded: {e}"),
        ));
    }
    Ok(exit)
}

/// Runs a stopped process left behind wait, queued, for the daemon, as they
/// would after its own restart.
async fn recover(executor: &Executor, loaded: &Loaded) -> Result<(), Failure> {
    let runbooks = loaded.runbooks.clone();
    let lookup = move |name: &str| runbooks.iter().find(|r| r.name == name).cloned();
    let r = crate::run::recover(executor.store().as_ref(), &lookup).await?;
    if r.interrupted > 0 {
        eprintln!(
            "note: {} run(s) left running by a stopped process were interrupted; {} queued again for the daemon, {} abandoned",
            r.interrupted, r.queued, r.abandoned
        );
    }
    Ok(())
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
