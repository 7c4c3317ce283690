//! The dispatcher: takes queued runs (from schedules, webhooks, restarts) and
//! executes them, one at a time per runbook where its concurrency says so.
//!
//! Which run may start is decided by the database (`claim`), never by a check
//! in memory; the dispatcher only remembers which runs it has started, so one
//! process does not start the same run twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::rescue::{Rescue, rescue};
use super::{Executor, RunRequest, TriggerInfo};
use crate::runbook::{Concurrency, Runbook};
use crate::store::{RunEnd, RunId, RunRow, RunStatus};

/// At most this many runs are started (executing, or waiting for a worker)
/// at once; the rest stay in the queue until some end.
const MAX_STARTED: usize = 1000;
/// A run whose record could not be written is looked for in the queue again after this.
const REREAD_AFTER_RECORD_ERROR: std::time::Duration = std::time::Duration::from_secs(5);
/// Queued runs are read this many at a time.
const PAGE: u32 = 500;
/// A waiting runbook's oldest queued runs read when one of its runs ends: one
/// of them can take the runbook's slot, the next finds it taken (anything
/// left over is found by the next full read, at reload or within a minute).
const WAITING_PAGE: u32 = 20;
/// Once [`MAX_STARTED`] was reached, the queue is read again when this many
/// of the started runs have ended (not at every end).
const REFILL: usize = 100;

/// The dispatcher's view of the queue, so that a pump reads only what is new.
#[derive(Default)]
struct Queue {
    /// Runs this process has started and that have not ended yet.
    started: HashSet<RunId>,
    /// Every queued run with an id up to this one has been looked at: started,
    /// or left waiting behind its runbook's active run.
    after: RunId,
    /// Runbooks with queued runs that could not start yet; they are read
    /// again when a run of theirs ends.
    waiting: HashSet<String>,
    /// The last pump stopped at [`MAX_STARTED`]: read on as runs end.
    full: bool,
}

/// Finds the current version of a runbook by name.
pub type Lookup = Arc<dyn Fn(&str) -> Option<Arc<Runbook>> + Send + Sync>;

pub struct Dispatcher {
    executor: Arc<Executor>,
    lookup: Lookup,
    /// Cancelled when shutdown begins: no queued run starts after it.
    intake: CancellationToken,
    /// Cancelled when the shutdown grace ends: runs stopped by it end `interrupted`.
    shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Runs this process has started, and how to cancel each; with their runbook.
    running: Mutex<HashMap<RunId, (String, CancellationToken)>>,
    /// What the dispatcher knows of the queue; the lock serialises pumps,
    /// so two never claim and start the same queued run.
    queue: tokio::sync::Mutex<Queue>,
    /// A full read of the queue is scheduled after a run's record failed.
    reread_pending: std::sync::atomic::AtomicBool,
    me: Weak<Dispatcher>,
}

impl Dispatcher {
    pub fn new(
        executor: Arc<Executor>,
        lookup: Lookup,
        intake: CancellationToken,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Dispatcher {
            executor,
            lookup,
            intake,
            shutdown,
            tracker: TaskTracker::new(),
            running: Mutex::new(HashMap::new()),
            queue: tokio::sync::Mutex::new(Queue::default()),
            reread_pending: Default::default(),
            me: me.clone(),
        })
    }

    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// How many runs are executing now.
    pub fn running(&self) -> usize {
        self.running.lock().expect("running lock").len()
    }

    /// Cancel one run this process is executing; false when it is not running here.
    pub fn cancel(&self, run: RunId) -> bool {
        match self.running.lock().expect("running lock").get(&run) {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Cancel the runs of a runbook this process executes that are older than
    /// `newer` (concurrency `replace`); returns how many.
    pub fn cancel_older(&self, runbook: &str, newer: RunId) -> usize {
        let running = self.running.lock().expect("running lock");
        let mut n = 0;
        for (id, (name, token)) in running.iter() {
            if name == runbook && *id < newer {
                token.cancel();
                n += 1;
            }
        }
        n
    }

    /// Start the queued runs that arrived since the last pump and may start now.
    pub async fn pump(&self) {
        let mut q = self.queue.lock().await;
        self.pump_new(&mut q).await;
    }

    /// Look at the whole queue again (at start, after a reload, after a run
    /// was queued again, and now and then): whatever could not start before
    /// and may start now does.
    pub async fn pump_all(&self) {
        let mut q = self.queue.lock().await;
        q.after = 0;
        q.waiting.clear();
        self.pump_new(&mut q).await;
    }

    async fn pump_new(&self, q: &mut Queue) {
        if self.intake.is_cancelled() {
            return;
        }
        loop {
            let room = MAX_STARTED.saturating_sub(q.started.len()).max(1);
            let limit = PAGE.min(room as u32);
            let page = match self
                .executor
                .store()
                .queued_runs(None, q.after, limit)
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the queue");
                    return;
                }
            };
            let more = page.len() == limit as usize;
            for row in page {
                if q.started.contains(&row.id) {
                    q.after = row.id;
                    continue;
                }
                if q.started.len() >= MAX_STARTED {
                    q.full = true;
                    return;
                }
                q.after = row.id;
                // A runbook whose oldest queued run cannot start yet keeps
                // its later runs waiting too, so they start in order.
                if !q.waiting.contains(&row.runbook) {
                    self.consider(q, row).await;
                }
            }
            q.full = false;
            if !more {
                break;
            }
        }
    }

    /// A run of `runbook` ended: start its next queued run if one waits,
    /// and read on if the last pump stopped at the limit.
    async fn ended(&self, run: RunId, runbook: &str) {
        let mut q = self.queue.lock().await;
        q.started.remove(&run);
        if q.waiting.remove(runbook) {
            match self
                .executor
                .store()
                .queued_runs(Some(runbook), 0, WAITING_PAGE)
                .await
            {
                Ok(rows) => {
                    for row in rows {
                        if q.waiting.contains(runbook) {
                            break;
                        }
                        // Runs past the cursor are left to `pump_new`, in order.
                        if row.id > q.after {
                            break;
                        }
                        self.consider(&mut q, row).await;
                    }
                }
                Err(e) => {
                    q.waiting.insert(runbook.to_string());
                    tracing::error!(error = %e, "could not read the queue");
                }
            }
        }
        if q.full && q.started.len() + REFILL <= MAX_STARTED {
            self.pump_new(&mut q).await;
        }
    }

    /// Start a queued run if it may start; otherwise leave its runbook waiting.
    async fn consider(&self, q: &mut Queue, row: RunRow) {
        if q.started.contains(&row.id) {
            return;
        }
        let Some(rb) = (self.lookup)(&row.runbook) else {
            self.fail_orphan(&row).await;
            return;
        };
        if rb.concurrency != Concurrency::Allow {
            match self.executor.store().claim(row.id, &rb.name).await {
                Ok(true) => {}
                Ok(false) => {
                    q.waiting.insert(row.runbook.clone());
                    return;
                }
                Err(e) => {
                    tracing::error!(run.id = row.id, error = %e, "could not claim a queued run");
                    q.waiting.insert(row.runbook.clone());
                    return;
                }
            }
        }
        q.started.insert(row.id);
        self.start(rb, row);
    }

    /// A queued run whose runbook is gone cannot run; say so in its record.
    async fn fail_orphan(&self, row: &RunRow) {
        let end = RunEnd {
            status: RunStatus::Failed,
            output: None,
            error: Some(format!("runbook {} no longer exists", row.runbook)),
            at: crate::clock::now(),
        };
        if let Err(e) = self
            .executor
            .store()
            .end_waiting(row.id, RunStatus::Queued, &end)
            .await
        {
            tracing::error!(run.id = row.id, error = %e, "could not record a run whose runbook is gone");
        }
    }

    fn start(&self, rb: Arc<Runbook>, row: RunRow) {
        let trigger = TriggerInfo {
            kind: row.trigger_kind,
            key: row.trigger_key.clone(),
            scheduled_at: row.scheduled_at,
            data: row.trigger_data.clone(),
        };
        let params = row.params.as_object().cloned().unwrap_or_default();
        let mut req = RunRequest::new(rb.clone(), trigger, params, &self.shutdown);
        // A dry run queued through the API or the web UI stays one.
        req.dry_run = row.dry_run;
        req.attempts_before = row.attempts;
        if row.version_hash != rb.version.hash {
            tracing::info!(run.id = row.id, runbook = %rb.name, "the runbook changed since this run was queued; running the current version");
        }
        self.running
            .lock()
            .expect("running lock")
            .insert(row.id, (rb.name.clone(), req.cancel.clone()));
        let outcome_runbook = rb.name.clone();
        let me = self.me.clone();
        let id = row.id;
        self.tracker.spawn(async move {
            let Some(this) = me.upgrade() else { return };
            let outcome = this.executor.execute(id, req).await;
            // Its record could not be written (a full disk, say), so it may
            // still be queued: read the whole queue again shortly (once, for
            // however many runs failed meanwhile).
            if outcome.record_error.is_some()
                && !this.reread_pending.swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let me = this.me.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(REREAD_AFTER_RECORD_ERROR).await;
                    if let Some(this) = me.upgrade() {
                        this.reread_pending
                            .store(false, std::sync::atomic::Ordering::Release);
                        this.pump_all().await;
                    }
                });
            }
            if outcome.status == RunStatus::Interrupted
                && !outcome.lost
                && let Err(e) = this.rescue(id, &outcome_runbook).await
            {
                tracing::error!(run.id = id, error = %e, "could not queue an interrupted run again");
            }
            this.running.lock().expect("running lock").remove(&id);
            // A finished run may free its runbook for a queued one.
            this.ended(id, &outcome_runbook).await;
        });
    }

    /// Queue an interrupted run again, or abandon it ([`super::rescue`]).
    async fn rescue(&self, run: RunId, runbook: &str) -> crate::store::Result<Rescue> {
        let rb = (self.lookup)(runbook);
        rescue(self.executor.store().as_ref(), rb.as_deref(), run).await
    }
}
