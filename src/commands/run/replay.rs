//! A run's progress read back from its record, for a person following a run
//! another process executes: the same events, in the same order, as the
//! executor hands a `runbookd run` that executes the run itself.
//!
//! The order rests on how the executor writes: a step's row is committed with
//! the last lines it logged (earlier ones may be written while it runs), and
//! an attempt is closed, its lines written, before the next one starts.

use std::collections::HashMap;

use crate::run::RunEvent;
use crate::store::{LogRow, RunDetail, StepRow};

/// How much of a run's record has been turned into events so far.
#[derive(Debug, Default)]
pub struct Replay {
    logs: usize,
    steps: usize,
    /// The last attempt announced (attempt 1 needs no announcement).
    attempt: u32,
}

impl Replay {
    /// The events recorded since the last call, in the order they happened;
    /// `steps` names the runbook's steps in order.
    pub fn next(&mut self, d: &RunDetail, steps: &[String]) -> Vec<RunEvent> {
        let attempt_of: HashMap<_, _> = d.attempts.iter().map(|a| (a.id, a.attempt)).collect();
        let mut out = Vec::new();
        loop {
            let log = d.logs.get(self.logs);
            let step = d.steps.get(self.steps).map(|s| {
                let attempt = attempt_of.get(&s.attempt_id).copied().unwrap_or(1);
                (s, attempt)
            });
            let step_first = match (log, step) {
                (None, None) => break,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(l), Some((s, attempt))) => ends_before(s, attempt, l, steps),
            };
            if let (true, Some((s, attempt))) = (step_first, step) {
                self.announce(attempt, &mut out);
                out.push(RunEvent::StepFinished {
                    name: s.name.clone(),
                    status: s.status,
                    millis: (s.finished_at - s.started_at).num_milliseconds().max(0) as u64,
                });
                self.steps += 1;
            } else if let Some(l) = log {
                self.announce(l.attempt, &mut out);
                out.push(RunEvent::Log(l.clone()));
                self.logs += 1;
            }
        }
        // An attempt that has begun, before it logs anything.
        if let Some(last) = d.attempts.last() {
            self.announce(last.attempt, &mut out);
        }
        out
    }

    fn announce(&mut self, attempt: u32, out: &mut Vec<RunEvent>) {
        while self.attempt < attempt {
            self.attempt += 1;
            out.push(RunEvent::AttemptStarted {
                attempt: self.attempt,
            });
        }
    }
}

/// Whether step `s` (of attempt `attempt`) ended before line `l` was logged:
/// by attempt, then by the runbook's step order for a line logged by a
/// step, then by time for the executor's own lines between steps.
fn ends_before(s: &StepRow, attempt: u32, l: &LogRow, steps: &[String]) -> bool {
    if attempt != l.attempt {
        return attempt < l.attempt;
    }
    let position = l
        .step
        .as_ref()
        .and_then(|name| steps.iter().position(|n| n == name));
    match position {
        Some(p) => (s.position as usize) < p,
        None => s.finished_at <= l.at,
    }
}

#[cfg(test)]
mod tests;
