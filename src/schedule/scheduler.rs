//! The scheduler: one loop that sleeps until the earliest next slot of any
//! armed trigger (or a reload), records the due slots through the store,
//! which makes each slot a run at most once, and arms each trigger at its
//! next slot. It is the only timer: what is due is read from the wall clock
//! each time it wakes (see `timers`).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::slots::{self, Plan, Policy, Schedule};
use super::timers::Timers;
use crate::run::Intake;
use crate::run::intake::DueSlots;
use crate::runbook::Runbook;
use crate::store::{SlotResult, Store};

/// (runbook name, trigger key).
pub type TriggerId = (String, String);

/// How the rest of the daemon talks to the scheduler.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::UnboundedSender<Vec<Arc<Runbook>>>,
}

impl SchedulerHandle {
    /// Replace the set of runbooks to schedule (after a load or a reload).
    pub fn set_runbooks(&self, runbooks: Vec<Arc<Runbook>>) {
        let _ = self.tx.send(runbooks);
    }
}

struct Armed {
    runbook: Arc<Runbook>,
    schedule: Schedule,
    /// The trigger's high-water mark as stored; read from the store the
    /// first time, and kept while this process is the store's only writer
    /// (with daemons sharing the store, another may move it: read each time).
    mark: Option<DateTime<Utc>>,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    /// Records due slots as runs (and starts them).
    intake: Arc<Intake>,
    /// The runbooks to schedule, sent on every load and reload; a message
    /// also wakes the loop early.
    rx: mpsc::UnboundedReceiver<Vec<Arc<Runbook>>>,
    armed: HashMap<TriggerId, Armed>,
    /// The next slot of every armed trigger.
    timers: Timers<TriggerId>,
    /// When the scheduler last looked at the clock: the wall time, and the
    /// steady clock's reading then.
    looked: Option<(DateTime<Utc>, std::time::Instant)>,
    /// The wall-clock span forward steps jumped over since the last plan.
    stepped: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A wall clock ahead of the steady clock by more than this since the last
/// look stepped forward (NTP corrections slew by far less).
const STEP: TimeDelta = TimeDelta::seconds(2);

impl Scheduler {
    /// Create the scheduler and its handle.
    pub fn new(store: Arc<dyn Store>, intake: Arc<Intake>) -> (Self, SchedulerHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let scheduler = Scheduler {
            store,
            intake,
            rx,
            armed: HashMap::new(),
            timers: Timers::default(),
            looked: None,
            stepped: None,
        };
        (scheduler, SchedulerHandle { tx })
    }

    /// Run until `stop` is cancelled: sleep until the earliest next slot (at
    /// most `timers::MAX_SLEEP`, then look at the clock again), or until the
    /// runbooks change.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let wait = self.timers.wait(crate::clock::now());
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(mut list) = self.rx.recv() => {
                    // Each message is the whole set: only the latest counts.
                    while let Ok(newer) = self.rx.try_recv() {
                        list = newer;
                    }
                    self.sync(list).await;
                }
                _ = tokio::time::sleep(wait) => {
                    // Triggers due together are recorded together (their
                    // slots share one commit).
                    let now = crate::clock::now();
                    self.look(now);
                    let due = self.timers.take_due(now);
                    if !due.is_empty() {
                        self.fire_all(due).await;
                    }
                }
            }
        }
    }

    /// Arm the schedule triggers of these runbooks, disarm those gone; a new
    /// trigger is accounted for at once (its mark, and any catch-up).
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
            self.armed.remove(&id);
            self.timers.set(&id, None);
            tracing::info!(runbook = %id.0, trigger = %id.1, "trigger no longer scheduled");
        }
        let mut new = Vec::new();
        for (id, (rb, schedule)) in wanted {
            match self.armed.get_mut(&id) {
                // Same trigger, perhaps a new version of the runbook: the next slot stands.
                Some(a) => a.runbook = rb,
                None => {
                    let armed = Armed {
                        runbook: rb,
                        schedule,
                        mark: None,
                    };
                    self.armed.insert(id.clone(), armed);
                    new.push(id);
                }
            }
        }
        if !new.is_empty() {
            self.read_marks(&new).await;
            self.fire_all(new).await;
        }
    }

    /// Read the marks of new triggers all at once: the first read of a mark
    /// is a write, and a thousand triggers armed at start would otherwise
    /// wait for a thousand commits in a row, making their first slot late.
    /// A mark that cannot be read is read again when the trigger fires.
    async fn read_marks(&mut self, ids: &[TriggerId]) {
        let now = crate::clock::now();
        let mut reads = tokio::task::JoinSet::new();
        for id in ids {
            let (store, id) = (self.store.clone(), id.clone());
            reads.spawn(async move {
                let mark = store.init_mark(&id.0, &id.1, now).await;
                (id, mark)
            });
        }
        while let Some(joined) = reads.join_next().await {
            if let Ok((id, Ok(mark))) = joined
                && let Some(a) = self.armed.get_mut(&id)
            {
                a.mark = Some(mark);
            }
        }
    }

    /// Account for the due slots of these triggers, then arm their next.
    /// Their slots are recorded at the same time, so the store commits them
    /// together.
    async fn fire_all(&mut self, ids: Vec<TriggerId>) {
        let now = crate::clock::now();
        self.look(now);
        let stepped = self.stepped.take();
        let mut planned = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(a) = self.armed.get(&id) else {
                continue;
            };
            let rb = a.runbook.clone();
            let mark = match a.mark {
                Some(m) if self.store.sole_writer() => Ok(m),
                // The store's mark only moves forward; a read that fails
                // falls back on this process's copy (the slots' uniqueness
                // still holds).
                Some(m) => Ok(match self.store.schedule_mark(&rb.name, &id.1).await {
                    Ok(stored) => stored.map_or(m, |s| s.max(m)),
                    Err(_) => m,
                }),
                None => self.store.init_mark(&rb.name, &id.1, now).await,
            };
            let plan = match mark {
                Ok(mark) => {
                    let plan = slots::plan_after_step(&a.schedule, mark, now, policy(&rb), stepped);
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
                    self.report(rb, &id.1, plan, now, stepped.is_some(), results);
                    recorded = true;
                    // The store's mark only moves forward; so does this copy.
                    if let Some(a) = self.armed.get_mut(id) {
                        a.mark = a.mark.max(Some(plan.mark));
                    }
                }
                Err(e) => {
                    tracing::error!(runbook = %rb.name, error = %e, "could not record due slots; retrying at the next slot");
                }
            }
        }
        if recorded {
            self.intake.pump().await;
        }
        for (id, _, plan) in planned {
            self.timers.set(&id, plan.next);
        }
    }

    /// Look at the clock (at every wake, at most a second apart): when the
    /// wall clock moved further than the steady clock since the last look,
    /// it stepped forward, and the span it jumped over is kept for the next
    /// plan.
    fn look(&mut self, now: DateTime<Utc>) {
        let steady_now = std::time::Instant::now();
        let Some((wall, steady)) = self.looked.replace((now, steady_now)) else {
            return;
        };
        let Ok(elapsed) = TimeDelta::from_std(steady_now - steady) else {
            return;
        };
        let expected = wall + elapsed;
        if now - expected > STEP {
            tracing::warn!(
                by_s = (now - expected).num_seconds(),
                "the clock stepped forward; slots it passed over follow the catch-up policy"
            );
            let from = self.stepped.map_or(expected, |(f, _)| f.min(expected));
            self.stepped = Some((from, now));
        }
    }

    /// Metrics and log lines for recorded slots.
    fn report(
        &self,
        rb: &Arc<Runbook>,
        key: &str,
        plan: &Plan,
        now: DateTime<Utc>,
        stepped: bool,
        results: Vec<SlotResult>,
    ) {
        if !plan.missed.is_empty() || plan.unlisted > 0 {
            metrics::counter!(crate::telemetry::RUNS_TOTAL, "runbook" => rb.name.clone(), "status" => "missed")
                .increment(plan.missed.len() as u64 + plan.unlisted);
            let why = if stepped {
                "slots passed over by the clock stepping forward (recorded as missed)"
            } else {
                "slots missed while the clock moved or the daemon was not running (recorded as missed)"
            };
            tracing::warn!(
                runbook = %rb.name, trigger = %key, missed = plan.missed.len() as u64 + plan.unlisted,
                "{why}"
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
                SlotResult::Duplicate(slot) => {
                    // Another daemon sharing the store recorded it first.
                    tracing::debug!(runbook = %rb.name, slot = %slot, "slot already taken by another daemon");
                }
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
