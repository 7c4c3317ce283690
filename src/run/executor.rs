//! The executor: performs a recorded run to its end — its attempts under a
//! lease renewed by heartbeat, the retries its policy allows, and its final
//! record. Every write is fenced by the lease: a process that lost the run
//! (paused past its lease, then taken over) writes nothing more of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use chrono_tz::Tz;
use tokio::sync::Semaphore;

use super::attempt::{self, AttemptResult};
use super::host::{RunContext, RunHost};
use super::{Effects, Outcome, RunEvent, RunRequest, lost_if_fenced};
use crate::script::{LogLevel, Sandbox};
use crate::secrets::Secrets;
use crate::store::{Lease, RunEnd, RunId, RunStatus, Store, StoreError};

/// How long a running attempt is held without a heartbeat: a process that
/// stopped loses its runs to recovery after this.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a running attempt renews its lease.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often lines a running step logged are written (when there are any),
/// for whoever follows the run from its record.
pub const LIVE_LOG: Duration = Duration::from_millis(500);
/// The last wait before giving up on recording a run's end (1 + 2 + ... + 16 s).
const FINISH_RETRY_UNTIL: Duration = Duration::from_secs(16);

pub struct Executor {
    pub(super) store: Arc<dyn Store>,
    pub(super) sandbox: Arc<Sandbox>,
    secrets: Secrets,
    timezone: Tz,
    /// At most `workers` runs execute at once; the rest wait for a permit.
    workers: Arc<Semaphore>,
    effects: Option<Arc<Effects>>,
    /// This process, as the owner of the attempts it runs.
    owner: String,
}

/// Stops a run's companion task (its heartbeat, its live log) when the run's
/// execution ends.
struct Companion(tokio::task::JoinHandle<()>);

impl Drop for Companion {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Executor {
    pub fn new(
        store: Arc<dyn Store>,
        sandbox: Arc<Sandbox>,
        secrets: Secrets,
        timezone: Tz,
        workers: usize,
    ) -> Self {
        let owner = format!(
            "{}/{}/{}",
            super::attempt::hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Executor {
            store,
            sandbox,
            secrets,
            timezone,
            workers: Arc::new(Semaphore::new(workers.max(1))),
            effects: None,
            owner,
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

    /// This process's identity as the owner of attempts.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn host(&self, run_id: RunId, req: &RunRequest) -> Arc<RunHost> {
        let rb = &req.runbook;
        let secrets: HashMap<String, String> = rb
            .secrets
            .iter()
            .filter_map(|n| self.secrets.get(n).map(|v| (n.clone(), v)))
            .collect();
        let identity = match (
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
        Arc::new(RunHost::new(RunContext {
            store: self.store.clone(),
            runbook: rb.clone(),
            run_id,
            secrets,
            clock: req.clock,
            timezone: self.timezone,
            events: req.events.clone(),
            effects: self.effects.clone(),
            identity,
            dry_run: req.dry_run,
            cancel: req.cancel.clone(),
        }))
    }

    /// Start the run's next attempt, held by this process.
    async fn start_attempt(&self, run_id: RunId) -> Result<Option<Lease>, StoreError> {
        let now = crate::clock::now();
        let until = now + TimeDelta::from_std(LEASE).unwrap_or_default();
        self.store
            .start_attempt(run_id, &self.owner, now, until)
            .await
    }

    /// Start the run's first attempt; it may run before its start is on
    /// disk ([`RunHost::started`]).
    async fn start_first(
        &self,
        req: &RunRequest,
        host: &RunHost,
    ) -> Result<Option<Lease>, StoreError> {
        let now = crate::clock::now();
        let until = now + TimeDelta::from_std(LEASE).unwrap_or_default();
        let number = req.attempts_before + 1;
        let started = self
            .store
            .start_attempt_early(host.run_id, number, &self.owner, now, until)
            .await?;
        Ok(started.map(|(lease, starting)| {
            host.start_pending(starting);
            lease
        }))
    }

    /// Renew the run's lease until the returned guard drops; a lost lease
    /// stops the run, and so does a request to cancel it made through
    /// another process (seen within a heartbeat).
    fn heartbeat(&self, host: &Arc<RunHost>) -> Companion {
        let (store, host) = (self.store.clone(), host.clone());
        Companion(tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                let Some(lease) = host.lease() else { continue };
                let until = crate::clock::now() + TimeDelta::from_std(LEASE).unwrap_or_default();
                match store.heartbeat(&lease, until).await {
                    Ok(false) => {}
                    Ok(true) => {
                        if !host.cancel.is_cancelled() {
                            tracing::info!(run.id = lease.run, runbook = %host.runbook, "the run was asked to stop through another process; cancelling it");
                            host.cancel.cancel();
                        }
                    }
                    Err(e @ StoreError::Fenced { .. }) => {
                        lost_if_fenced(&host, &e);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(run.id = lease.run, error = %e, "could not renew a run's lease")
                    }
                }
            }
        }))
    }

    /// Write the lines the run logs while a step runs every [`LIVE_LOG`],
    /// until the returned guard drops. Lines written with a step's or the
    /// run's record are taken first, so nothing is written twice or lost.
    fn live_log(&self, host: &Arc<RunHost>) -> Companion {
        let host = host.clone();
        Companion(tokio::spawn(async move {
            loop {
                tokio::time::sleep(LIVE_LOG).await;
                if let Err(e) = host.flush().await {
                    lost_if_fenced(&host, &e);
                    tracing::warn!(run.id = host.run_id, error = %e, "could not write a run's log lines");
                }
            }
        }))
    }

    /// Execute a submitted run to its end: attempts, retries, and the final record.
    pub async fn execute(&self, run_id: RunId, req: RunRequest) -> Outcome {
        let permit = self
            .workers
            .acquire()
            .await
            .expect("the worker pool is never closed");
        let rb = req.runbook.clone();
        let host = self.host(run_id, &req);
        let lease = match self.start_first(&req, &host).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                tracing::info!(run.id = run_id, runbook = %rb.name, "the run was started elsewhere or has ended; leaving it");
                return not_started(run_id, None);
            }
            Err(e) => {
                // Nothing of this run was done or recorded: it stays
                // queued, and is started again once the store takes
                // writes (the dispatcher reads the queue again).
                tracing::error!(run.id = run_id, runbook = %rb.name, error = %e, "could not record the start of a run; it stays queued");
                return not_started(run_id, Some(e.to_string()));
            }
        };
        let _beat = self.heartbeat(&host);
        let _live = self.live_log(&host);
        let started = std::time::Instant::now();
        let (result, lease) = self.attempts(&req, &host, lease).await;
        // The run's work is done: the next run may take the worker while
        // this one's end waits for its commit.
        drop(permit);
        // Nothing it wrote is kept, and nothing left the process, unless its
        // start is on disk.
        match host.started().await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                tracing::info!(run.id = run_id, runbook = %rb.name, "the run was started elsewhere or has ended; leaving it");
                return not_started(run_id, None);
            }
            Err(e) => {
                // It stays queued, and runs again once the store takes writes.
                tracing::error!(run.id = run_id, runbook = %rb.name, error = %e, "could not record the start of a run; it stays queued");
                return not_started(run_id, Some(e.to_string()));
            }
        }
        let record_error = self.record_end(&req, &host, &lease, &result).await;
        let lost = matches!(record_error, Some(StoreError::Fenced { .. }));
        if !lost {
            metrics::counter!(crate::telemetry::RUNS_TOTAL, "runbook" => rb.name.clone(), "status" => result.status.as_str()).increment(1);
            metrics::histogram!(crate::telemetry::RUN_DURATION, "runbook" => rb.name.clone())
                .record(started.elapsed().as_secs_f64());
            tracing::info!(run.id = run_id, runbook = %rb.name, status = %result.status, "run finished");
        }
        Outcome {
            run_id,
            status: result.status,
            output: result.output,
            error: result.error,
            record_error: record_error.map(|e| e.to_string()),
            lost,
        }
    }

    /// The run's attempts, retried as its policy says; returns the last
    /// attempt's result and lease.
    async fn attempts(
        &self,
        req: &RunRequest,
        host: &Arc<RunHost>,
        mut lease: Lease,
    ) -> (AttemptResult, Lease) {
        let rb = &req.runbook;
        loop {
            host.begin_attempt(lease.clone());
            if let Some(tx) = &req.events {
                let _ = tx.send(RunEvent::AttemptStarted {
                    attempt: lease.number,
                });
            }
            let result = attempt::run(self, req, host, &lease).await;
            let retryable = matches!(result.status, RunStatus::Failed | RunStatus::TimedOut);
            if !retryable || lease.number >= rb.retry.attempts || req.cancel.is_cancelled() {
                return (result, lease);
            }
            match self.retry(req, host, &lease, &result).await {
                Ok(next) => lease = next,
                Err(stopped) => return (stopped, lease),
            }
        }
    }

    /// Close a failed attempt, wait the policy's delay, start the next one.
    async fn retry(
        &self,
        req: &RunRequest,
        host: &Arc<RunHost>,
        lease: &Lease,
        result: &AttemptResult,
    ) -> Result<Lease, AttemptResult> {
        if let Err(e) = host.started().await {
            return Err(AttemptResult::failed(RunStatus::Failed, e.to_string()));
        }
        let keep = |r: Result<(), StoreError>| {
            if let Err(e) = r {
                lost_if_fenced(host, &e);
                tracing::error!(run.id = lease.run, error = %e, "could not record part of a run");
            }
        };
        match &result.last_step {
            Some(step) => {
                let (_turn, lines) = host.take_pending().await;
                keep(self.store.insert_step(lease, step, &lines).await);
            }
            None => keep(host.flush().await),
        }
        let error = result.error.as_deref();
        keep(
            self.store
                .finish_attempt(lease, result.status, error, crate::clock::now())
                .await,
        );
        let next = lease.number + 1;
        let delay = req.runbook.retry.delay_before(next);
        host.note(
            LogLevel::Warn,
            &format!(
                "attempt {} {}; attempt {next} in {}",
                lease.number,
                result.status,
                crate::duration::human(delay)
            ),
        );
        keep(host.flush().await);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = req.cancel.cancelled() => {
                let status = if req.interrupt.is_cancelled() { RunStatus::Interrupted } else { RunStatus::Cancelled };
                return Err(AttemptResult::failed(status, "stopped while waiting to retry".into()));
            }
        }
        match self.start_attempt(lease.run).await {
            Ok(Some(next)) => Ok(next),
            Ok(None) => Err(AttemptResult::failed(
                RunStatus::Failed,
                "the run is no longer held by this process".into(),
            )),
            Err(e) => {
                tracing::error!(run.id = lease.run, error = %e, "could not record the start of a retry");
                Err(AttemptResult::failed(
                    RunStatus::Failed,
                    "the run could not be recorded".into(),
                ))
            }
        }
    }

    /// Record the run's end with its last step and log lines. A write refused for a
    /// passing cause (a full disk) is tried again for about half a minute; a
    /// run whose end still could not be written stays `running` and is taken
    /// as interrupted by recovery. Returns the error that stopped it.
    async fn record_end(
        &self,
        req: &RunRequest,
        host: &RunHost,
        lease: &Lease,
        result: &AttemptResult,
    ) -> Option<StoreError> {
        let end = RunEnd {
            status: result.status,
            output: result.output.clone(),
            error: result.error.clone(),
            at: crate::clock::now(),
        };
        let (_turn, lines) = host.take_pending().await;
        let mut wait = Duration::from_secs(1);
        loop {
            let step = result.last_step.as_ref();
            match self.store.finish(lease, step, &lines, &end).await {
                Ok(()) => return None,
                Err(e @ StoreError::Fenced { .. }) => {
                    // Its last step was refused with it: the run is lost here.
                    lost_if_fenced(host, &e);
                    tracing::warn!(run.id = lease.run, runbook = %host.runbook, error = %e, "the run's end was not recorded: this process no longer holds it");
                    return Some(e);
                }
                Err(e) if wait <= FINISH_RETRY_UNTIL && !req.interrupt.is_cancelled() => {
                    tracing::warn!(run.id = lease.run, runbook = %host.runbook, error = %e, "could not record the end of a run; trying again in {}s", wait.as_secs());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = req.interrupt.cancelled() => {}
                    }
                    wait *= 2;
                }
                Err(e) => {
                    tracing::error!(run.id = lease.run, runbook = %host.runbook, error = %e, "could not record part of a run");
                    return Some(e);
                }
            }
        }
    }
}

/// The outcome of a run this process did not start: it stays queued (the
/// store refused the write), or another process has it.
fn not_started(run_id: RunId, error: Option<String>) -> Outcome {
    Outcome {
        run_id,
        status: RunStatus::Queued,
        output: None,
        lost: error.is_none(),
        record_error: error.clone(),
        error,
    }
}
