//! The scheduler: arms each schedule trigger as a one-shot timer at its next
//! slot, and when it fires (or when the reconciler finds it late) records the
//! due slots through the store, which makes each slot a run at most once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::slots::{self, Plan, Policy, Schedule};
use crate::run::Dispatcher;
use crate::runbook::{Concurrency, Runbook};
use crate::store::{Admission, SlotBatch, SlotResult, Store};

/// A trigger the timer missed by this much is fired by the reconciler.
const RECONCILE_AFTER: TimeDelta = TimeDelta::milliseconds(1500);
/// How often the reconciler looks.
const RECONCILE_EVERY: Duration = Duration::from_millis(250);
/// The timer wheel answers in far less; past this it is taken as stuck.
const WHEEL_TIMEOUT: Duration = Duration::from_secs(2);

/// A call to the timer wheel that cannot hang the scheduler. The wheel can
/// stop answering when its internal channels overflow (a burst of timers
/// re-armed at once); after one call goes unanswered, it is no longer used,
/// and every trigger fires from the reconciler, on the scheduler's own clock.
async fn wheel<T, E: std::fmt::Display>(
    ok: &mut bool,
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    if !*ok {
        return None;
    }
    match tokio::time::timeout(WHEEL_TIMEOUT, call).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not {what}; the reconciler will fire it");
            None
        }
        Err(_) => {
            *ok = false;
            tracing::error!(
                "the timer wheel did not answer within {}s ({what}); schedules now fire from the reconciler",
                WHEEL_TIMEOUT.as_secs()
            );
            None
        }
    }
}

/// (runbook name, trigger key).
pub type TriggerId = (String, String);

enum Msg {
    Fire(TriggerId),
    Runbooks(Vec<Arc<Runbook>>),
}

/// How the rest of the daemon talks to the scheduler.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl SchedulerHandle {
    /// Replace the set of runbooks to schedule (after a load or a reload).
    pub fn set_runbooks(&self, runbooks: Vec<Arc<Runbook>>) {
        let _ = self.tx.send(Msg::Runbooks(runbooks));
    }
}

struct Armed {
    runbook: Arc<Runbook>,
    schedule: Schedule,
    next: Option<DateTime<Utc>>,
    job: Option<Uuid>,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    timers: JobScheduler,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    armed: HashMap<TriggerId, Armed>,
    /// Runbook versions already kept in the store by this process.
    saved: std::collections::HashSet<String>,
    /// False once the timer wheel stopped answering: the reconciler fires
    /// every trigger from then on.
    wheel_ok: bool,
}

impl Scheduler {
    /// Create the scheduler and its handle.
    ///
    /// Fails when the timer wheel cannot start.
    pub async fn new(
        store: Arc<dyn Store>,
        dispatcher: Arc<Dispatcher>,
    ) -> anyhow::Result<(Self, SchedulerHandle)> {
        let timers = JobScheduler::new().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = SchedulerHandle { tx: tx.clone() };
        Ok((
            Scheduler {
                store,
                dispatcher,
                timers,
                tx,
                rx,
                armed: HashMap::new(),
                saved: Default::default(),
                wheel_ok: true,
            },
            handle,
        ))
    }

    /// Run until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        if let Err(e) = self.timers.start().await {
            tracing::error!(error = %e, "the timer wheel did not start; relying on the reconciler");
        }
        let mut reconcile = tokio::time::interval(RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(msg) = self.rx.recv() => match msg {
                    Msg::Fire(id) => {
                        // The wheel's one-shot job is spent: nothing to remove.
                        if let Some(a) = self.armed.get_mut(&id) {
                            a.job = None;
                        }
                        self.fire(&id).await
                    }
                    Msg::Runbooks(list) => self.sync(list).await,
                },
                _ = reconcile.tick() => self.reconcile().await,
            }
        }
        let _ = tokio::time::timeout(WHEEL_TIMEOUT, self.timers.shutdown()).await;
    }

    /// The next slot of every armed trigger, for the start-up summary.
    async fn sync(&mut self, runbooks: Vec<Arc<Runbook>>) {
        let mut wanted: HashMap<TriggerId, (Arc<Runbook>, Schedule)> = HashMap::new();
        for rb in runbooks.iter().filter(|r| r.enabled) {
            for t in &rb.triggers {
                if let Some(s) = Schedule::of(t) {
                    wanted.insert((rb.name.clone(), t.key()), (rb.clone(), s));
                }
            }
        }
        let gone: Vec<TriggerId> = self
            .armed
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for id in gone {
            if let Some(a) = self.armed.remove(&id)
                && let Some(job) = a.job
            {
                wheel(
                    &mut self.wheel_ok,
                    "remove a timer",
                    self.timers.remove(&job),
                )
                .await;
            }
            tracing::info!(runbook = %id.0, trigger = %id.1, "trigger no longer scheduled");
        }
        for (id, (rb, schedule)) in wanted {
            match self.armed.get_mut(&id) {
                // Same trigger, perhaps a new version of the runbook: the next slot stands.
                Some(a) => a.runbook = rb,
                None => {
                    self.armed.insert(
                        id.clone(),
                        Armed {
                            runbook: rb,
                            schedule,
                            next: None,
                            job: None,
                        },
                    );
                    self.fire(&id).await;
                }
            }
        }
    }

    async fn reconcile(&mut self) {
        let late = if self.wheel_ok {
            Utc::now() - RECONCILE_AFTER
        } else {
            Utc::now()
        };
        let due: Vec<TriggerId> = self
            .armed
            .iter()
            .filter(|(_, a)| a.next.is_some_and(|n| n <= late))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            tracing::debug!(runbook = %id.0, trigger = %id.1, "timer missed a slot; firing from the reconciler");
            self.fire(&id).await;
        }
    }

    /// Account for the slots of one trigger that are due, then arm the next.
    async fn fire(&mut self, id: &TriggerId) {
        let Some(a) = self.armed.get(id) else { return };
        let rb = a.runbook.clone();
        let now = Utc::now();
        let plan = match self.store.init_mark(&rb.name, &id.1, now).await {
            Ok(mark) => slots::plan(&a.schedule, mark, now, policy(&rb)),
            Err(e) => {
                tracing::error!(runbook = %rb.name, error = %e, "could not read the schedule mark; retrying");
                Plan {
                    next: Some(now + TimeDelta::seconds(5)),
                    mark: now,
                    ..Plan::default()
                }
            }
        };
        if !plan.run.is_empty() || !plan.missed.is_empty() {
            self.record(&rb, &id.1, &plan, now).await;
        }
        let next = plan.next;
        self.arm(id, next).await;
    }

    async fn record(&mut self, rb: &Arc<Runbook>, key: &str, plan: &Plan, now: DateTime<Utc>) {
        if rb.concurrency == Concurrency::Replace && !plan.run.is_empty() {
            let n = self.dispatcher.cancel_runbook(&rb.name);
            if n > 0 {
                tracing::info!(runbook = %rb.name, "cancelling the active run to replace it (concurrency: replace)");
            }
        }
        let params = crate::run::bind_cli_params(rb, &[])
            .map(serde_json::Value::Object)
            .unwrap_or_default();
        let batch = SlotBatch {
            runbook: rb.name.clone(),
            version_hash: rb.version.hash.clone(),
            trigger_kind: key.split(' ').next().unwrap_or("cron").to_string(),
            trigger_key: key.to_string(),
            run: plan.run.clone(),
            missed: plan.missed.clone(),
            mark: plan.mark,
            admission: match rb.concurrency {
                Concurrency::Allow => Admission::Free,
                Concurrency::Forbid => Admission::Exclusive,
                Concurrency::Queue | Concurrency::Replace => Admission::Queued,
            },
            params,
            now,
        };
        if !self.saved.contains(&rb.version.hash) {
            if let Err(e) = crate::run::save_version(self.store.as_ref(), rb).await {
                tracing::error!(runbook = %rb.name, error = %e, "could not record the runbook version");
                return;
            }
            self.saved.insert(rb.version.hash.clone());
        }
        let results = match self.store.record_slots(&batch).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(runbook = %rb.name, error = %e, "could not record due slots; the reconciler will retry");
                return;
            }
        };
        if !plan.missed.is_empty() || plan.unlisted > 0 {
            metrics::counter!(crate::telemetry::RUNS_TOTAL, "runbook" => rb.name.clone(), "status" => "missed")
                .increment(plan.missed.len() as u64 + plan.unlisted);
            tracing::warn!(
                runbook = %rb.name, trigger = %key, missed = plan.missed.len() as u64 + plan.unlisted,
                "slots missed while the daemon was not running (recorded as missed)"
            );
        }
        for r in results {
            match r {
                SlotResult::Created(run, slot) => {
                    let late = (now - slot).num_milliseconds() as f64 / 1000.0;
                    metrics::histogram!(crate::telemetry::SCHEDULE_LATENESS).record(late.max(0.0));
                    tracing::info!(run.id = run, runbook = %rb.name, slot = %slot, lateness_s = late, "slot due");
                }
                SlotResult::Skipped(run, slot) => {
                    metrics::counter!(crate::telemetry::RUNS_TOTAL, "runbook" => rb.name.clone(), "status" => "skipped").increment(1);
                    tracing::warn!(run.id = run, runbook = %rb.name, slot = %slot, "slot skipped: the previous run is still active (concurrency: forbid)");
                }
                SlotResult::Duplicate(_) => {}
            }
        }
        self.dispatcher.pump().await;
    }

    async fn arm(&mut self, id: &TriggerId, next: Option<DateTime<Utc>>) {
        let Some(a) = self.armed.get_mut(id) else {
            return;
        };
        if let Some(job) = a.job.take() {
            wheel(
                &mut self.wheel_ok,
                "remove a timer",
                self.timers.remove(&job),
            )
            .await;
        }
        a.next = next;
        let Some(next) = next else { return };
        if !self.wheel_ok {
            return;
        }
        let wait = (next - Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_millis(10));
        let tx = self.tx.clone();
        let fire_id = id.clone();
        let job = Job::new_one_shot_at_instant_async(Instant::now() + wait, move |_, _| {
            let tx = tx.clone();
            let id = fire_id.clone();
            Box::pin(async move {
                let _ = tx.send(Msg::Fire(id));
            })
        });
        match job {
            Ok(job) => {
                a.job = wheel(&mut self.wheel_ok, "arm a timer", self.timers.add(job)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not arm a timer; the reconciler will fire it")
            }
        }
    }
}

fn policy(rb: &Runbook) -> Policy {
    Policy {
        catch_up: rb.catch_up,
        within: rb.catch_up_within.and_then(|d| TimeDelta::from_std(d).ok()),
    }
}
