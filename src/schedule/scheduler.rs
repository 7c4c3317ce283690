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
use crate::run::Intake;
use crate::run::intake::DueSlots;
use crate::runbook::Runbook;
use crate::store::{SlotResult, Store};

/// The wheel polls every 500 ms, so it fires a timer within about that; a
/// trigger not fired this long after its slot is fired by the reconciler,
/// which wakes at that moment on the scheduler's own clock.
const RECONCILE_AFTER: TimeDelta = TimeDelta::milliseconds(600);
/// The timer wheel answers in far less; past this it is taken as stuck (and
/// the scheduler waited this long once, so it is kept short).
const WHEEL_TIMEOUT: Duration = Duration::from_millis(250);

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
                "the timer wheel did not answer within {} ms ({what}); schedules now fire from the reconciler",
                WHEEL_TIMEOUT.as_millis()
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
    /// The trigger's high-water mark as stored (this process is the only
    /// one that moves it); read from the store the first time.
    mark: Option<DateTime<Utc>>,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    /// Records due slots as runs (and starts them).
    intake: Arc<Intake>,
    timers: JobScheduler,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    armed: HashMap<TriggerId, Armed>,
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
        intake: Arc<Intake>,
    ) -> anyhow::Result<(Self, SchedulerHandle)> {
        let timers = JobScheduler::new().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = SchedulerHandle { tx: tx.clone() };
        Ok((
            Scheduler {
                store,
                intake,
                timers,
                tx,
                rx,
                armed: HashMap::new(),
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
        loop {
            let reconcile_at = self.reconcile_at();
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(msg) = self.rx.recv() => match msg {
                    Msg::Fire(id) => {
                        // Timers that went off together are recorded together
                        // (their slots share one commit).
                        let mut ids = vec![id];
                        let mut next = None;
                        while let Ok(m) = self.rx.try_recv() {
                            match m {
                                Msg::Fire(id) => ids.push(id),
                                other => {
                                    next = Some(other);
                                    break;
                                }
                            }
                        }
                        // A wheel's one-shot job is spent once it fired: nothing to remove.
                        for id in &ids {
                            if let Some(a) = self.armed.get_mut(id) {
                                a.job = None;
                            }
                        }
                        self.fire_all(ids).await;
                        if let Some(Msg::Runbooks(list)) = next {
                            self.sync(list).await;
                        }
                    }
                    Msg::Runbooks(list) => self.sync(list).await,
                },
                _ = tokio::time::sleep_until(reconcile_at) => self.reconcile().await,
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
                            mark: None,
                        },
                    );
                    self.fire(&id).await;
                }
            }
        }
    }

    /// How late a trigger may be before the reconciler fires it.
    fn grace(&self) -> TimeDelta {
        if self.wheel_ok {
            RECONCILE_AFTER
        } else {
            TimeDelta::zero()
        }
    }

    /// When the earliest armed trigger is due for the reconciler.
    fn reconcile_at(&self) -> tokio::time::Instant {
        let wait = match self.armed.values().filter_map(|a| a.next).min() {
            Some(next) => (next + self.grace() - Utc::now())
                .to_std()
                .unwrap_or_default(),
            None => Duration::from_secs(3600),
        };
        tokio::time::Instant::now() + wait
    }

    async fn reconcile(&mut self) {
        let late = Utc::now() - self.grace();
        let due: Vec<TriggerId> = self
            .armed
            .iter()
            .filter(|(_, a)| a.next.is_some_and(|n| n <= late))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            tracing::debug!(runbook = %id.0, trigger = %id.1, "timer missed a slot; firing from the reconciler");
        }
        self.fire_all(due).await;
    }

    /// Account for the slots of one trigger that are due, then arm the next.
    async fn fire(&mut self, id: &TriggerId) {
        self.fire_all(vec![id.clone()]).await;
    }

    /// Account for the due slots of these triggers, then arm their next.
    /// Their slots are recorded at the same time, so the store commits them
    /// together.
    async fn fire_all(&mut self, ids: Vec<TriggerId>) {
        let now = Utc::now();
        let mut planned = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(a) = self.armed.get(&id) else {
                continue;
            };
            let rb = a.runbook.clone();
            let mark = match a.mark {
                Some(m) => Ok(m),
                None => self.store.init_mark(&rb.name, &id.1, now).await,
            };
            let plan = match mark {
                Ok(mark) => {
                    let plan = slots::plan(&a.schedule, mark, now, policy(&rb));
                    if let Some(a) = self.armed.get_mut(&id) {
                        a.mark = Some(mark);
                    }
                    plan
                }
                Err(e) => {
                    tracing::error!(runbook = %rb.name, error = %e, "could not read the schedule mark; retrying");
                    Plan {
                        next: Some(now + TimeDelta::seconds(5)),
                        mark: now,
                        ..Plan::default()
                    }
                }
            };
            planned.push((id, rb, plan));
        }
        let mut writes = tokio::task::JoinSet::new();
        for (i, (id, rb, plan)) in planned.iter().enumerate() {
            if plan.run.is_empty() && plan.missed.is_empty() {
                continue;
            }
            let Some(t) = rb.triggers.iter().position(|t| t.key() == id.1) else {
                continue;
            };
            let (intake, rb) = (self.intake.clone(), rb.clone());
            let (run, missed, mark) = (plan.run.clone(), plan.missed.clone(), plan.mark);
            writes.spawn(async move {
                let due = DueSlots {
                    trigger: &rb.triggers[t],
                    run: &run,
                    missed: &missed,
                    mark,
                    now,
                };
                (i, intake.record_slots(&rb, due).await)
            });
        }
        let mut recorded = false;
        while let Some(joined) = writes.join_next().await {
            let Ok((i, result)) = joined else { continue };
            let (id, rb, plan) = &planned[i];
            match result {
                Ok(results) => {
                    self.report(rb, &id.1, plan, now, results);
                    recorded = true;
                    // The store's mark only moves forward; so does this copy.
                    if let Some(a) = self.armed.get_mut(id) {
                        a.mark = a.mark.max(Some(plan.mark));
                    }
                }
                Err(e) => {
                    tracing::error!(runbook = %rb.name, error = %e, "could not record due slots; the reconciler will retry");
                }
            }
        }
        if recorded {
            self.intake.pump().await;
        }
        for (id, _, plan) in planned {
            self.arm(&id, plan.next).await;
        }
    }

    /// Metrics and log lines for recorded slots.
    fn report(
        &self,
        rb: &Arc<Runbook>,
        key: &str,
        plan: &Plan,
        now: DateTime<Utc>,
        results: Vec<SlotResult>,
    ) {
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
