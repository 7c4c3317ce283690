//! What a schedule means, as one pure function of (schedule, high-water mark,
//! now, catch-up policy): which slots are due to run, which were missed, and
//! when the next one comes. Everything about cron syntax, time zones, DST and
//! downtime lives here, so it can be tested as a table.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::runbook::{CatchUp, Trigger};

/// A slot this late or less just runs, whatever the catch-up policy.
pub const GRACE: TimeDelta = TimeDelta::seconds(60);
/// `catch_up: all` runs at most this many missed slots.
pub const MAX_CATCH_UP: usize = 100;
/// At most this many missed slots are listed one by one; older ones are counted.
pub const MAX_LISTED_MISSED: usize = 1000;

/// The time-based part of a trigger.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron { cron: Box<croner::Cron>, tz: Tz },
    Every { interval: Duration },
}

impl Schedule {
    pub fn of(trigger: &Trigger) -> Option<Schedule> {
        match trigger {
            Trigger::Cron {
                schedule, timezone, ..
            } => Some(Schedule::Cron {
                cron: schedule.clone(),
                tz: *timezone,
            }),
            Trigger::Every { interval } => Some(Schedule::Every {
                interval: *interval,
            }),
            _ => None,
        }
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { cron, tz } => cron
                .find_next_occurrence(&t.with_timezone(tz), false)
                .ok()
                .map(|local| local.with_timezone(&Utc)),
            Schedule::Every { interval } => {
                // Aligned to the epoch, so slots do not depend on when the daemon started.
                let step = interval.as_millis().max(1) as i64;
                let ms = t.timestamp_millis();
                DateTime::from_timestamp_millis((ms.div_euclid(step) + 1) * step)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub catch_up: CatchUp,
    pub within: Option<TimeDelta>,
}

/// What to do for one trigger now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Slots to run, oldest first.
    pub run: Vec<DateTime<Utc>>,
    /// Slots to record as `missed`, oldest first (at most [`MAX_LISTED_MISSED`]).
    pub missed: Vec<DateTime<Utc>>,
    /// Missed slots too old to be listed.
    pub unlisted: u64,
    /// The new high-water mark: the latest slot accounted for.
    pub mark: DateTime<Utc>,
    /// The next slot after now (or after the mark, if the clock went back).
    pub next: Option<DateTime<Utc>>,
}

/// Plan the slots of `schedule` after `mark` up to `now`, the clock having
/// run steadily (see [`plan_after_step`]).
pub fn plan(schedule: &Schedule, mark: DateTime<Utc>, now: DateTime<Utc>, policy: Policy) -> Plan {
    plan_after_step(schedule, mark, now, policy, None)
}

/// Plan the slots of `schedule` after `mark` up to `now`.
///
/// A slot at or before the mark is never planned again, so a clock stepping
/// backwards cannot re-fire one. `stepped` is a span of wall-clock time a
/// forward step of the clock (an NTP step, a suspended machine) jumped over:
/// slots in it were never on time, so they get no grace and the catch-up
/// policy decides, as after downtime.
///
/// Under `latest`, one late slot is enough: only the most recent due slot
/// runs, the others are missed (a backlog is never run back to back).
pub fn plan_after_step(
    schedule: &Schedule,
    mark: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: Policy,
    stepped: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Plan {
    let mut due = std::collections::VecDeque::new();
    let mut unlisted = 0u64;
    let mut t = mark;
    while let Some(s) = schedule.next_after(t) {
        if s > now {
            break;
        }
        due.push_back(s);
        if due.len() > MAX_LISTED_MISSED + MAX_CATCH_UP {
            due.pop_front();
            unlisted += 1;
        }
        t = s;
    }
    let due: Vec<DateTime<Utc>> = due.into();
    let mut plan = Plan {
        unlisted,
        mark: due.last().copied().unwrap_or(mark),
        next: schedule.next_after(now.max(mark)),
        ..Plan::default()
    };
    let passed_over = |s: &DateTime<Utc>| stepped.is_some_and(|(from, to)| *s > from && *s <= to);
    let (on_time, late): (Vec<_>, Vec<_>) = due
        .into_iter()
        .partition(|s| now - *s < GRACE && !passed_over(s));
    let too_old = |s: &DateTime<Utc>| policy.within.is_some_and(|w| now - *s > w);
    let any_late = !late.is_empty();
    let (mut stale, late): (Vec<_>, Vec<_>) = late.into_iter().partition(too_old);
    plan.missed.append(&mut stale);
    match policy.catch_up {
        CatchUp::Skip => plan.missed.extend(late),
        CatchUp::Latest if any_late => {
            // The most recent due slot, whichever list holds it, and no other.
            let mut all: Vec<_> = late.into_iter().chain(on_time).collect();
            all.sort();
            if let Some(last) = all.pop() {
                plan.run.push(last);
            }
            plan.missed.extend(all);
            return finish(plan);
        }
        CatchUp::Latest => {}
        CatchUp::All => {
            let keep = MAX_CATCH_UP.saturating_sub(on_time.len()).min(late.len());
            let cut = late.len() - keep;
            plan.missed.extend_from_slice(&late[..cut]);
            plan.run.extend_from_slice(&late[cut..]);
        }
    }
    plan.run.extend(on_time);
    finish(plan)
}

/// Both lists oldest first; missed slots beyond [`MAX_LISTED_MISSED`] are
/// counted, not listed.
fn finish(mut plan: Plan) -> Plan {
    plan.run.sort();
    plan.missed.sort();
    if plan.missed.len() > MAX_LISTED_MISSED {
        let extra = plan.missed.len() - MAX_LISTED_MISSED;
        plan.missed.drain(..extra);
        plan.unlisted += extra as u64;
    }
    plan
}

/// The next time an enabled runbook's schedules fire after `now`.
pub fn next_fire(rb: &crate::runbook::Runbook, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !rb.enabled {
        return None;
    }
    rb.triggers
        .iter()
        .filter_map(|t| Schedule::of(t)?.next_after(now))
        .min()
}

/// The next `count` slots after `from`.
pub fn upcoming(schedule: &Schedule, from: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    let mut out = Vec::with_capacity(count);
    let mut t = from;
    while out.len() < count {
        match schedule.next_after(t) {
            Some(s) => {
                out.push(s);
                t = s;
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests;
