//! Runs whose attempt was interrupted (the process died, shut down, or lost
//! its lease): queued again for a new attempt, or, after too many
//! interruptions, `abandoned` for good.
//!
//! The one invariant: a run whose process stopped under it is queued again at
//! most [`MAX_RESCUES`] times (shutdowns do not count), so a run that kills
//! the process running it (a script that exhausts memory or
//! the stack, a native crash) cannot take the daemon, or every daemon sharing
//! the store, down again and again.

use std::sync::Arc;

use crate::runbook::{Concurrency, Runbook};
use crate::store::{RunEnd, RunId, RunStatus, STOPPED, Store};

/// How many times one run may be interrupted (crash, shutdown) and run again.
pub const MAX_RESCUES: usize = 3;

/// What became of an interrupted run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescue {
    /// Queued again, for a new attempt.
    Queued,
    /// Interrupted more than [`MAX_RESCUES`] times: ended `abandoned`.
    Abandoned,
    /// Left `interrupted`: its runbook is gone, it was asked to stop, or it
    /// is no longer interrupted (another process took care of it).
    Kept,
}

/// Queue an interrupted run of `rb` again, or abandon it when its process
/// stopped under it (a crash, not a shutdown) more than [`MAX_RESCUES`] times. A run whose runbook is gone
/// (`rb` is `None`) stays interrupted.
pub async fn rescue(
    store: &dyn Store,
    rb: Option<&Runbook>,
    run: RunId,
) -> crate::store::Result<Rescue> {
    let Some(rb) = rb else {
        return Ok(Rescue::Kept);
    };
    // Only the times its process stopped under it count: a shutdown that
    // interrupts a long run on purpose, deploy after deploy, does not.
    let interrupted = match store.run_detail(run).await? {
        Some(d) => d
            .attempts
            .iter()
            .filter(|a| a.status == RunStatus::Interrupted && a.error.as_deref() == Some(STOPPED))
            .count(),
        None => return Ok(Rescue::Kept),
    };
    if interrupted > MAX_RESCUES {
        let end = RunEnd {
            status: RunStatus::Abandoned,
            output: None,
            error: Some(format!(
                "interrupted {interrupted} times (the process running it stopped each time); \
                 not run again. Start it anew once the cause is fixed"
            )),
            at: crate::clock::now(),
        };
        return Ok(
            if store.end_waiting(run, RunStatus::Interrupted, &end).await? {
                metrics::counter!(crate::telemetry::RUNS_TOTAL, "runbook" => rb.name.clone(), "status" => RunStatus::Abandoned.as_str()).increment(1);
                tracing::error!(run.id = run, runbook = %rb.name, interrupted, "a run interrupted too many times is abandoned");
                Rescue::Abandoned
            } else {
                Rescue::Kept
            },
        );
    }
    let key = (rb.concurrency != Concurrency::Allow).then_some(rb.name.as_str());
    Ok(if store.requeue(run, key).await? {
        Rescue::Queued
    } else {
        Rescue::Kept
    })
}

/// What crash recovery did with the runs a stopped process left running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Runs marked `interrupted`.
    pub interrupted: usize,
    /// Of those, queued again.
    pub queued: usize,
    /// Of those, interrupted too often: `abandoned`.
    pub abandoned: usize,
}

/// Crash recovery, the same for the daemon and a one-off `runbookd run`: runs
/// whose owner stopped become `interrupted` and are rescued ([`rescue`]). An
/// interruption is not the runbook's failure, so this does not spend its
/// retry policy.
///
/// A run's owner stopped when its lease expired; when this process is the
/// store's only writer, every lease it finds at start is dead.
pub async fn recover(
    store: &dyn Store,
    lookup: &(dyn Fn(&str) -> Option<Arc<Runbook>> + Send + Sync),
) -> crate::store::Result<Recovered> {
    let now = crate::clock::now();
    let expired_by = if store.sole_writer() {
        // 9999-12-31T23:59:59Z: every lease has expired by then.
        chrono::DateTime::from_timestamp(253_402_300_799, 0).expect("a valid time")
    } else {
        now
    };
    let stuck = store.recover(expired_by, now).await?;
    let mut done = Recovered {
        interrupted: stuck.len(),
        ..Recovered::default()
    };
    for row in &stuck {
        match rescue(store, lookup(&row.runbook).as_deref(), row.id).await? {
            Rescue::Queued => done.queued += 1,
            Rescue::Abandoned => done.abandoned += 1,
            Rescue::Kept => {}
        }
    }
    if done.interrupted > 0 {
        tracing::warn!(
            interrupted = done.interrupted,
            retried = done.queued,
            abandoned = done.abandoned,
            "runs left running by a stopped process were marked interrupted"
        );
    }
    Ok(done)
}
