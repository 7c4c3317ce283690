use chrono::{DateTime, TimeDelta, Utc};

use super::Replay;
use crate::run::RunEvent;
use crate::store::{AttemptRow, LogRow, RunDetail, RunRow, RunStatus, StepRow, TriggerKind};

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::milliseconds(ms)
}

fn log(attempt: u32, step: Option<&str>, ms: i64, message: &str) -> LogRow {
    LogRow {
        run_id: 1,
        attempt,
        step: step.map(str::to_string),
        at: at(ms),
        level: "info".into(),
        message: message.into(),
    }
}

fn step(attempt_id: i64, position: u32, name: &str, from: i64, to: i64) -> StepRow {
    StepRow {
        attempt_id,
        position,
        name: name.into(),
        status: RunStatus::Succeeded,
        started_at: at(from),
        finished_at: at(to),
        output: None,
        error: None,
    }
}

fn attempt(id: i64, attempt: u32, ms: i64) -> AttemptRow {
    AttemptRow {
        id,
        attempt,
        status: RunStatus::Running,
        started_at: at(ms),
        finished_at: None,
        error: None,
    }
}

fn detail(attempts: Vec<AttemptRow>, steps: Vec<StepRow>, logs: Vec<LogRow>) -> RunDetail {
    RunDetail {
        run: RunRow {
            id: 1,
            runbook: "r".into(),
            version_hash: "h".into(),
            trigger_kind: TriggerKind::Manual,
            trigger_key: None,
            scheduled_at: None,
            status: RunStatus::Running,
            params: serde_json::json!({}),
            trigger_data: serde_json::json!({}),
            attempts: attempts.len() as u32,
            dry_run: false,
            created_at: at(0),
            started_at: Some(at(0)),
            finished_at: None,
            output: None,
            error: None,
        },
        attempts,
        steps,
        logs,
    }
}

fn shown(events: Vec<RunEvent>) -> Vec<String> {
    events
        .into_iter()
        .map(|e| match e {
            RunEvent::Log(l) => format!("log {} {}", l.attempt, l.message),
            RunEvent::AttemptStarted { attempt } => format!("attempt {attempt}"),
            RunEvent::StepFinished { name, millis, .. } => format!("step {name} {millis}ms"),
        })
        .collect()
}

#[test]
fn events_read_back_in_the_order_they_happened_across_polls_and_attempts() {
    let steps = ["a".to_string(), "b".to_string()];
    // Step a ended in the same millisecond that b logged its first line.
    let a1 = vec![
        log(1, Some("a"), 5, "a says"),
        log(1, Some("b"), 10, "b says"),
    ];
    let first = detail(
        vec![attempt(7, 1, 0)],
        vec![step(7, 0, "a", 0, 10)],
        a1.clone(),
    );
    let mut replay = Replay::default();
    assert_eq!(
        shown(replay.next(&first, &steps)),
        ["attempt 1", "log 1 a says", "step a 10ms", "log 1 b says"]
    );
    assert!(replay.next(&first, &steps).is_empty(), "nothing twice");
    // b ended; the executor noted the retry; attempt 2 began and logged.
    let mut logs = a1;
    logs.push(log(1, None, 30, "attempt 1 failed; attempt 2 in 1s"));
    logs.push(log(2, Some("a"), 1040, "a again"));
    let second = detail(
        vec![attempt(7, 1, 0), attempt(8, 2, 1030)],
        vec![step(7, 0, "a", 0, 10), step(7, 1, "b", 10, 25)],
        logs,
    );
    assert_eq!(
        shown(replay.next(&second, &steps)),
        [
            "step b 15ms",
            "log 1 attempt 1 failed; attempt 2 in 1s",
            "attempt 2",
            "log 2 a again"
        ]
    );
}
