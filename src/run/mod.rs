//! Runs: the only code that creates, performs and records them.
//!
//! A run is born in the [`intake`] (whatever fired it), waits in the queue
//! until the [`Dispatcher`] starts it, and is performed by the [`Executor`] as
//! one or more attempts (retries), each running the steps in order on a
//! blocking thread, under a lease that fences everything it writes. Whatever
//! happens inside a script ends as a recorded result, never as an error of the
//! process.

mod attempt;
mod data;
mod dispatch;
mod effects;
mod executor;
mod host;
pub mod intake;
mod params;
mod rescue;
mod start_gate;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

pub use dispatch::Dispatcher;
pub use effects::{Effects, HttpReplay, build_effects};
pub use executor::{Executor, LEASE};
pub use host::{Clock, MAX_LOG_LINES};
pub use intake::Intake;
pub use params::{bind_cli_params, bind_json_params};
pub use rescue::{MAX_RESCUES, Recovered, Rescue, recover, rescue};

use crate::runbook::Runbook;
use crate::store::{LogRow, RunId, RunStatus, StoreError, TriggerKind};

/// What fired a run.
#[derive(Debug, Clone)]
pub struct TriggerInfo {
    pub kind: TriggerKind,
    /// Which trigger of the runbook; with `scheduled_at`, the slot.
    pub key: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// What scripts see as `trigger` besides kind and scheduled_at (body, headers...).
    pub data: serde_json::Value,
}

impl TriggerInfo {
    pub fn manual() -> Self {
        TriggerInfo {
            kind: TriggerKind::Manual,
            key: None,
            scheduled_at: None,
            data: serde_json::json!({}),
        }
    }
}

pub struct RunRequest {
    pub runbook: Arc<Runbook>,
    pub trigger: TriggerInfo,
    /// Already checked against the runbook's params.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub clock: Clock,
    /// Progress for a person watching (the CLI); the store gets everything anyway.
    pub events: Option<UnboundedSender<RunEvent>>,
    /// Cancels this run (a person asked, or `replace` made room for a newer one).
    pub cancel: CancellationToken,
    /// The daemon is shutting down: a run stopped by it ends `interrupted`,
    /// to be retried at the next start. `cancel` is a child of it.
    pub interrupt: CancellationToken,
    /// Perform reads, record (and do not perform) every write.
    pub dry_run: bool,
    /// Attempts the run had before this execution (a run queued again after
    /// its process stopped has had some).
    pub attempts_before: u32,
}

impl RunRequest {
    /// A request to run `runbook` with its default params, cancellable by `interrupt`.
    pub fn new(
        runbook: Arc<Runbook>,
        trigger: TriggerInfo,
        params: serde_json::Map<String, serde_json::Value>,
        interrupt: &CancellationToken,
    ) -> Self {
        RunRequest {
            runbook,
            trigger,
            params,
            clock: Clock::real(),
            events: None,
            cancel: interrupt.child_token(),
            interrupt: interrupt.clone(),
            dry_run: false,
            attempts_before: 0,
        }
    }
}

/// What a watcher sees while a run goes on.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Log(LogRow),
    AttemptStarted {
        attempt: u32,
    },
    StepFinished {
        name: String,
        status: RunStatus,
        millis: u64,
    },
}

/// How a run ended, as recorded.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_id: RunId,
    pub status: RunStatus,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Set when part of the run could not be written to the store.
    pub record_error: Option<String>,
    /// The run is no longer this process's: its lease was lost (another
    /// process took it back) or another process started it first. Nothing
    /// more is written for it here, and it is not queued again from here.
    pub lost: bool,
}

/// A write refused by the fence means the run's lease is lost: stop the run
/// (its calls in flight are abandoned); nothing more of it is recorded.
pub(crate) fn lost_if_fenced(host: &host::RunHost, e: &StoreError) {
    if matches!(e, StoreError::Fenced { .. }) && !host.cancel.is_cancelled() {
        tracing::warn!(run.id = host.run_id, runbook = %host.runbook, "this process no longer holds the run; stopping it");
        host.cancel.cancel();
    }
}
