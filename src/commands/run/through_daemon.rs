//! A run the daemon holding the database performs for this command: it is
//! submitted through the API with the params bound here, and followed by
//! polling its record, so its lines print as they are written (every half
//! second while a step runs) and the command exits with its result.
//!
//! Ctrl-C asks the daemon to cancel the run and keeps following it to its
//! end (recorded as cancelled, exit 1); a second Ctrl-C exits at once with
//! 130, leaving the run to the daemon.

use std::time::Duration;

use serde::Deserialize;

use super::print::{Ended, conflict, print_end, print_event, print_start};
use super::replay::Replay;
use crate::cli::RunArgs;
use crate::commands::Outcome;
use crate::commands::remote::{Daemon, Refused};
use crate::runbook::Runbook;
use crate::store::{RunDetail, RunStatus};

/// How often the run's record is read while it runs.
const POLL: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
struct Submitted {
    run_id: i64,
}

pub async fn run(
    daemon: &Daemon,
    rb: &Runbook,
    params: serde_json::Map<String, serde_json::Value>,
    args: &RunArgs,
) -> Outcome {
    let body = serde_json::json!({ "params": params, "dry_run": args.dry_run });
    let path = format!("/api/v1/runbooks/{}/runs", rb.name);
    let Submitted { run_id } = daemon.post(&path, &body).await.map_err(|r| match r {
        Refused::Problem {
            status: 409,
            detail,
        } => conflict(detail),
        r => daemon.failure(&format!("run {}", rb.name), r),
    })?;
    let started = chrono::Utc::now();
    let steps: Vec<String> = rb.steps.iter().map(|s| s.name.clone()).collect();
    let interrupts = tokio::spawn(watch_interrupts(daemon.clone(), run_id));
    let mut replay = Replay::default();
    let mut first = true;
    let detail = loop {
        let d: RunDetail = (daemon.get(&format!("/api/v1/runs/{run_id}")).await)
            .map_err(|r| daemon.failure(&format!("follow run {run_id}"), r))?;
        if !args.json {
            if std::mem::take(&mut first) {
                print_start(run_id, &d.run.runbook, &d.run.version_hash);
            }
            replay.next(&d, &steps).iter().for_each(print_event);
        }
        if !matches!(d.run.status, RunStatus::Queued | RunStatus::Running) {
            break d;
        }
        tokio::time::sleep(POLL).await;
    };
    interrupts.abort();
    let ended = Ended {
        run_id,
        status: detail.run.status,
        error: detail.run.error.clone(),
        output: detail.run.output.clone(),
    };
    Ok(print_end(&ended, started, args.json.then_some(&detail)))
}

/// The first Ctrl-C asks the daemon to cancel the run; a second one exits
/// at once.
async fn watch_interrupts(daemon: Daemon, run_id: i64) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("cancelling the run; press Ctrl-C again to exit at once");
    let path = format!("/api/v1/runs/{run_id}/cancel");
    if let Err(r) = daemon
        .post::<serde_json::Value>(&path, &serde_json::json!({}))
        .await
    {
        let f = daemon.failure(&format!("cancel run {run_id}"), r);
        eprintln!("error: {}", f.message);
    }
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(130);
    }
}
