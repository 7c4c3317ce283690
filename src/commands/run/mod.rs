//! `runbookd run NAME`: run a runbook once, now; stream its log; exit with
//! its result. The run happens in this process ([`local`]) unless a daemon
//! holds the database: then the daemon runs it and this process follows it
//! through the API ([`through_daemon`]), printing the same lines.

mod local;
mod print;
mod replay;
mod through_daemon;

use std::sync::Arc;

use chrono::DateTime;

use super::{Env, Exit, Failure, Outcome};
use crate::cli::RunArgs;
use crate::run::{Clock, bind_cli_params};
use crate::script::Sandbox;
use crate::store::{Access, StoreError};

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
    match crate::store::open(&env.config.database, Access::Exclusive).await {
        Ok(store) => {
            let asked = local::Asked { rb, params, clock };
            local::run(env, sandbox, store, &loaded, asked, &args).await
        }
        Err(StoreError::Busy { database, holder }) => {
            if args.now.is_some() {
                return Err(Failure::new(
                    Exit::Usage,
                    format!("the database {database} is in use by {holder}, which runs on the real clock: --now works only when this command runs the runbook itself"),
                )
                .hint("leave out --now to run it through the daemon, or stop the daemon"));
            }
            let daemon = super::remote::Daemon::new(env, &database, &holder);
            through_daemon::run(&daemon, &rb, params, &args).await
        }
        Err(e) => Err(e.into()),
    }
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
