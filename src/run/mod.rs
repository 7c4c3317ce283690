//! The executor: the only code that performs a run and writes its rows.
//!
//! A run is recorded before it starts, then executed as one or more attempts
//! (retries), each running the steps in order on a blocking thread. Whatever
//! happens inside a script ends as a recorded result, never as an error of the
//! process.

mod attempt;
mod data;
mod dispatch;
mod effects;
mod host;
mod params;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

pub use dispatch::{Dispatcher, rescue};
pub use effects::{Effects, HttpReplay, SEVERITIES, build_effects};
pub use host::{Clock, MAX_LOG_LINES};
pub use params::{bind_cli_params, bind_json_params};

use crate::runbook::{Concurrency, Runbook};
use crate::script::{LogLevel, Sandbox};
use crate::secrets::Secrets;
use crate::store::{LogRow, NewRun, RunEnd, RunId, RunStatus, Store, StoreError, VersionRow};

/// What fired a run.
#[derive(Debug, Clone)]
pub struct TriggerInfo {
    /// `manual`, `cron`, `every` or `webhook`.
    pub kind: String,
    /// Which trigger of the runbook; with `scheduled_at`, the slot.
    pub key: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// What scripts see as `trigger` besides kind and scheduled_at (body, headers...).
    pub data: serde_json::Value,
}

impl TriggerInfo {
    pub fn manual() -> Self {
        TriggerInfo {
            kind: "manual".into(),
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
    /// 1 for a new run; more for a run retried after an interruption.
    pub first_attempt: u32,
    /// Perform reads, record (and do not perform) every write.
    pub dry_run: bool,
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
            first_attempt: 1,
            dry_run: false,
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
/// The last wait before giving up on recording a run's end (1 + 2 + ... + 16 s).
const FINISH_RETRY_UNTIL: Duration = Duration::from_secs(16);

#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_id: RunId,
    pub status: RunStatus,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    /// Set when part of the run could not be written to the store.
    pub record_error: Option<String>,
}

/// Keep the text of the runbook's current version (once per hash).
pub async fn save_version(store: &dyn Store, rb: &Runbook) -> Result<(), StoreError> {
    store
        .save_version(&VersionRow {
            hash: rb.version.hash.clone(),
            runbook: rb.name.clone(),
            path: rb.path.display().to_string(),
            yaml: rb.version.yaml.clone(),
            scripts: rb.version.scripts.clone(),
            created_at: Utc::now(),
        })
        .await
}

pub struct Executor {
    store: Arc<dyn Store>,
    sandbox: Arc<Sandbox>,
    secrets: Secrets,
    timezone: Tz,
    /// At most `workers` runs execute at once; the rest wait for a permit.
    workers: Arc<Semaphore>,
    effects: Option<Arc<Effects>>,
}

impl Executor {
    pub fn new(
        store: Arc<dyn Store>,
        sandbox: Arc<Sandbox>,
        secrets: Secrets,
        timezone: Tz,
        workers: usize,
    ) -> Self {
        Executor {
            store,
            sandbox,
            secrets,
            timezone,
            workers: Arc::new(Semaphore::new(workers.max(1))),
            effects: None,
        }
    }

    /// Give runs HTTP and email (issues need only the store).
    pub fn with_effects(mut self, effects: Arc<Effects>) -> Self {
        self.effects = Some(effects);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Record a run as queued (and the runbook version it will run).
    ///
    /// Fails only when the store cannot write.
    pub async fn submit(&self, req: &RunRequest) -> Result<RunId, StoreError> {
        let rb = &req.runbook;
        let now = Utc::now();
        save_version(self.store.as_ref(), rb).await?;
        self.store
            .insert_run(&NewRun {
                runbook: rb.name.clone(),
                version_hash: rb.version.hash.clone(),
                trigger_kind: req.trigger.kind.clone(),
                trigger_key: req.trigger.key.clone(),
                scheduled_at: req.trigger.scheduled_at,
                status: RunStatus::Queued,
                params: serde_json::Value::Object(req.params.clone()),
                trigger_data: req.trigger.data.clone(),
                dry_run: req.dry_run,
                created_at: now,
                // `forbid` refuses a second active run; `queue` and `replace` wait for a claim.
                active_key: (rb.concurrency == Concurrency::Forbid).then(|| rb.name.clone()),
            })
            .await
    }

    /// Execute a submitted run to its end: attempts, retries, and the final record.
    pub async fn execute(&self, run_id: RunId, req: RunRequest) -> Outcome {
        let _permit = self
            .workers
            .acquire()
            .await
            .expect("the worker pool is never closed");
        let rb = req.runbook.clone();
        let secrets: HashMap<String, String> = rb
            .secrets
            .iter()
            .filter_map(|n| self.secrets.get(n).map(|v| (n.clone(), v)))
            .collect();
        let mut host = host::RunHost::new(
            self.store.clone(),
            rb.name.clone(),
            run_id,
            secrets,
            rb.secrets.clone(),
            req.clock,
            self.timezone,
            req.events.clone(),
        );
        host.effects = self.effects.clone();
        host.http_allow = rb.http_allow.clone();
        host.http_min_interval = rb.http_min_interval;
        host.dry_run = req.dry_run;
        host.cancel = Some(req.cancel.clone());
        host.identity = match (
            &req.trigger.scheduled_at,
            req.trigger.data.get("delivery_id"),
        ) {
            (Some(slot), _) => format!(
                "slot {} {}",
                req.trigger.key.as_deref().unwrap_or(""),
                crate::store::ts(*slot)
            ),
            (None, Some(d)) => format!("delivery {d}"),
            (None, None) => format!("run {run_id}"),
        };
        let host = Arc::new(host);
        let mut record_error: Option<String> = None;
        let mut keep = |r: Result<(), StoreError>| {
            if let Err(e) = r {
                tracing::error!(run.id = run_id, runbook = %rb.name, error = %e, "could not record part of a run");
                record_error.get_or_insert(e.to_string());
            }
        };
        let started = std::time::Instant::now();
        let mut attempt = req.first_attempt.max(1);
        // The last attempt is closed by the run's end (the store does both in
        // one statement); an attempt that is retried is closed here.
        let result = loop {
            host.attempt
                .store(attempt, std::sync::atomic::Ordering::Relaxed);
            host.sends.store(0, std::sync::atomic::Ordering::Relaxed);
            if let Some(tx) = &req.events {
                let _ = tx.send(RunEvent::AttemptStarted { attempt });
            }
            let attempt_id = match self.store.start_attempt(run_id, attempt, Utc::now()).await {
                Ok(id) => id,
                Err(e) if attempt == req.first_attempt.max(1) => {
                    // Nothing of this run was done or recorded: it stays
                    // queued, and is started again once the store takes
                    // writes (the dispatcher reads the queue again).
                    tracing::error!(run.id = run_id, runbook = %rb.name, error = %e, "could not record the start of a run; it stays queued");
                    return Outcome {
                        run_id,
                        status: RunStatus::Queued,
                        output: None,
                        error: Some(e.to_string()),
                        record_error: Some(e.to_string()),
                    };
                }
                Err(e) => {
                    keep(Err(e));
                    break attempt::AttemptResult::failed(
                        RunStatus::Failed,
                        "the run could not be recorded".into(),
                    );
                }
            };
            let result = attempt::run(self, &req, &host, attempt_id).await;
            let retryable = matches!(result.status, RunStatus::Failed | RunStatus::TimedOut);
            if !retryable || attempt >= rb.retry.attempts || req.cancel.is_cancelled() {
                break result;
            }
            keep(host.flush().await);
            keep(
                self.store
                    .finish_attempt(
                        attempt_id,
                        result.status,
                        result.error.as_deref(),
                        Utc::now(),
                    )
                    .await,
            );
            attempt += 1;
            let delay = rb.retry.delay_before(attempt);
            host.note(
                LogLevel::Warn,
                &format!(
                    "attempt {} {}; attempt {attempt} in {}",
                    attempt - 1,
                    result.status,
                    crate::duration::human(delay)
                ),
            );
            keep(host.flush().await);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = req.cancel.cancelled() => {
                    let status = if req.interrupt.is_cancelled() { RunStatus::Interrupted } else { RunStatus::Cancelled };
                    break attempt::AttemptResult::failed(status, "stopped while waiting to retry".into());
                }
            }
        };
        let end = RunEnd {
            status: result.status,
            output: result.output.clone(),
            error: result.error.clone(),
            at: Utc::now(),
        };
        // The run's end is what its history hinges on: a write refused for a
        // passing cause (a full disk) is tried again for about half a
        // minute; a run whose end still could not be written stays
        // `running` and is taken as interrupted at the next start.
        let lines = host.take_pending();
        let mut wait = Duration::from_secs(1);
        loop {
            match self.store.finish(&lines, run_id, &end).await {
                Err(e) if wait <= FINISH_RETRY_UNTIL && !req.interrupt.is_cancelled() => {
                    tracing::warn!(run.id = run_id, runbook = %rb.name, error = %e, "could not record the end of a run; trying again in {}s", wait.as_secs());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = req.interrupt.cancelled() => {}
                    }
                    wait *= 2;
                }
                done => {
                    keep(done);
                    break;
                }
            }
        }
        metrics::counter!(crate::telemetry::RUNS_TOTAL, "runbook" => rb.name.clone(), "status" => result.status.as_str()).increment(1);
        metrics::histogram!(crate::telemetry::RUN_DURATION, "runbook" => rb.name.clone())
            .record(started.elapsed().as_secs_f64());
        tracing::info!(run.id = run_id, runbook = %rb.name, status = %result.status, "run finished");
        Outcome {
            run_id,
            status: result.status,
            output: result.output,
            error: result.error,
            record_error,
        }
    }
}
