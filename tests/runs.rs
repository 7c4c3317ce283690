//! The executor's contract (SPEC §4): steps in order, `if:`, continue_on_error,
//! retries as attempts of one run, the last step's value as output, state.

mod common;

use std::time::{Duration, Instant};

use common::{Deployment, Harness};
use runbookd::script::Limits;
use runbookd::store::RunStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_pass_values_skip_and_continue() {
    let d = Deployment::new();
    d.runbook(
        "flow.yaml",
        concat!(
            "params:\n  limit: { type: integer, default: 3 }\n  who: { type: list, default: [ana, bo] }\n",
            "steps:\n",
            "  - name: find\n    run: |\n      let found = [];\n      for i in 1..=params.limit { found.push(#{ id: i }); }\n      found\n",
            "  - name: never\n    if: steps.find.len() > 10\n    run: '\"unreachable\"'\n",
            "  - name: flaky\n    continue_on_error: true\n    run: throw \"provider down\"\n",
            "  - name: report\n    run: |\n      #{ count: steps.find.len(), never: steps.never, flaky: steps.flaky, first: params.who[0], run: run.runbook, kind: trigger.kind }\n",
        ),
    );
    let h = Harness::new(d, Limits::default()).await;
    let out = h.run("flow").await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(
        out.output,
        Some(
            serde_json::json!({"count": 3, "never": null, "flaky": null, "first": "ana", "run": "flow", "kind": "manual"})
        )
    );
    let detail = h.detail(out.run_id).await;
    let steps: Vec<(&str, RunStatus)> = detail
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [
            ("find", RunStatus::Succeeded),
            ("never", RunStatus::Skipped),
            ("flaky", RunStatus::Failed),
            ("report", RunStatus::Succeeded)
        ]
    );
    assert_eq!(
        detail.steps[0].output,
        Some(serde_json::json!([{"id": 1}, {"id": 2}, {"id": 3}]))
    );
    assert_eq!(
        detail.run.params,
        serde_json::json!({"limit": 3, "who": ["ana", "bo"]})
    );
    assert!(
        detail
            .logs
            .iter()
            .any(|l| l.message == "continuing after step flaky (continue_on_error)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_new_attempts_of_the_same_run_with_backoff() {
    let d = Deployment::new();
    d.runbook(
        "flaky.yaml",
        "retry: { attempts: 4, delay: 200ms, backoff: 2.0, max_delay: 300ms }\nrun: |\n  let n = state::get(\"n\", 0) + 1;\n  state::set(\"n\", n);\n  if n < 3 { throw `attempt ${n} failed` }\n  `ok on ${run.attempt}`\n",
    );
    d.runbook(
        "hopeless.yaml",
        "retry: { attempts: 2, delay: 10ms }\nrun: fail(\"the provider rejected us\")\n",
    );
    let h = Harness::new(d, Limits::default()).await;
    let t = Instant::now();
    let out = h.run("flaky").await;
    // Waits of 200ms, then 300ms (400ms capped by max_delay).
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        (out.status, out.output),
        (RunStatus::Succeeded, Some(serde_json::json!("ok on 3")))
    );
    let detail = h.detail(out.run_id).await;
    let attempts: Vec<(u32, RunStatus)> = detail
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, RunStatus::Failed),
            (2, RunStatus::Failed),
            (3, RunStatus::Succeeded)
        ]
    );
    assert_eq!(detail.run.attempts, 3);
    assert_eq!(
        detail.attempts[0].error.as_deref(),
        Some("step main: Runtime error: attempt 1 failed (line 3, position 12)")
    );
    assert!(
        detail
            .logs
            .iter()
            .any(|l| l.message == "attempt 1 failed; attempt 2 in 200ms"),
        "{:?}",
        detail.logs
    );
    assert!(
        detail
            .logs
            .iter()
            .any(|l| l.message == "attempt 2 failed; attempt 3 in 300ms")
    );

    let out = h.run("hopeless").await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(
        out.error.as_deref(),
        Some("step main: the provider rejected us")
    );
    let detail = h.detail(out.run_id).await;
    assert_eq!(detail.attempts.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_ends_the_run_even_with_continue_on_error() {
    let d = Deployment::new();
    d.runbook(
        "stop.yaml",
        "steps:\n  - name: check\n    continue_on_error: true\n    run: |\n      try { fail(\"quota exhausted\") } catch { \"caught\" }\n  - name: after\n    run: '\"should not run\"'\n",
    );
    let h = Harness::new(d, Limits::default()).await;
    let out = h.run("stop").await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(out.error.as_deref(), Some("step check: quota exhausted"));
    let detail = h.detail(out.run_id).await;
    assert_eq!(detail.steps.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_persists_per_runbook_and_expires() {
    let d = Deployment::new();
    d.runbook(
        "writer.yaml",
        "run: |\n  state::set(\"seen\", #{ at: now(), ids: [1, 2] });\n  state::set(\"brief\", 1, \"1s\");\n  state::set(\"gone\", 1);\n  state::delete(\"gone\")\n",
    );
    d.runbook(
        "reader.yaml",
        "run: |\n  #{ seen: state::get(\"seen\"), fallback: state::get(\"seen\", 5) }\n",
    );
    d.runbook(
        "writer-check.yaml",
        "name: writer\nrun: |\n  #{ ids: state::get(\"seen\").ids, brief: state::get(\"brief\", \"expired\"), gone: state::get(\"gone\") }\n",
    );
    let h = Harness::new(d, Limits::default()).await;
    // Only one file may name a runbook `writer`: run the writer, then swap in the checker.
    std::fs::rename(
        h.deployment.runbooks().join("writer-check.yaml"),
        h.deployment.path().join("later.yaml"),
    )
    .unwrap();
    let out = h.run("writer").await;
    assert_eq!(
        (out.status, out.output),
        (RunStatus::Succeeded, Some(serde_json::json!(true)))
    );
    // Another runbook does not see it.
    let out = h.run("reader").await;
    assert_eq!(
        out.output,
        Some(serde_json::json!({"seen": null, "fallback": 5}))
    );
    let store = h.executor.store();
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    assert_eq!(
        store
            .state_get("writer", "brief", chrono::Utc::now())
            .await
            .unwrap(),
        Some(serde_json::json!(1))
    );
    assert_eq!(
        store.state_get("writer", "brief", later).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .state_get("writer", "seen", later)
            .await
            .unwrap()
            .unwrap()["ids"],
        serde_json::json!([1, 2])
    );
    std::fs::rename(
        h.deployment.path().join("later.yaml"),
        h.deployment.runbooks().join("writer.yaml"),
    )
    .unwrap();
    let out = h.run("writer").await;
    assert_eq!(
        out.output,
        Some(serde_json::json!({"ids": [1, 2], "brief": 1, "gone": null}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_helpers_work_in_the_trigger_zone() {
    let d = Deployment::new();
    d.runbook(
        "time.yaml",
        concat!(
            "run: |\n",
            "  let t = parse_time(\"2026-03-08T06:59:00Z\");\n",
            "  let later = t + duration(\"2h\");\n",
            "  #{\n",
            "    later: later.rfc3339(),\n",
            "    ny: later.format(\"%H:%M %Z\", \"America/New_York\"),\n",
            "    gap: (later - t).minutes(),\n",
            "    before: t < later,\n",
            "    open: business_hours(later, \"Europe/Paris\", \"09:00-18:00\", \"Mon-Fri\"),\n",
            "    json: to_json(parse_json(`{\"a\":[1,2.5,null]}`)),\n",
            "  }\n",
        ),
    );
    let h = Harness::new(d, Limits::default()).await;
    let out = h.run("time").await;
    assert_eq!(
        out.output,
        Some(serde_json::json!({
            "later": "2026-03-08T08:59:00Z",
            "ny": "04:59 EDT",
            "gap": 120,
            "before": true,
            "open": false,
            "json": "{\"a\":[1,2.5,null]}",
        }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_values_are_whole_and_blocking_calls_are_refused() {
    let d = Deployment::new();
    d.runbook(
        "whole.yaml",
        concat!(
            "params:\n  a: { type: integer, default: 1 }\n",
            "steps:\n",
            "  - name: first\n    run: '#{ n: 2 }'\n",
            "  - name: second\n    run: |\n",
            "      #{ params: to_json(params), steps: to_json(steps), run_type: type_of(run),\n",
            "         now_type: type_of(now()), span_type: type_of(duration(\"1h\")),\n",
            "         map: to_json(#{ at: parse_time(\"2026-01-01\") }), list: to_json([parse_time(\"2026-01-02\")]) }\n",
            "  - name: last\n    if: 'false'\n    run: '\"never\"'\n",
        ),
    );
    d.runbook("sleepy.yaml", "timeout: 2s\nrun: sleep(30)\n");
    let h = Harness::new(d, Limits::default()).await;
    let out = h.run("whole").await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    // The last step was skipped: the run's output is its (empty) value.
    assert_eq!(out.output, Some(serde_json::Value::Null));
    let detail = h.detail(out.run_id).await;
    assert_eq!(
        detail.steps[1].output,
        Some(serde_json::json!({
            "params": "{\"a\":1}",
            "steps": "{\"first\":{\"n\":2}}",
            "run_type": "map",
            "now_type": "timestamp",
            "span_type": "duration",
            "map": "{\"at\":\"2026-01-01T00:00:00Z\"}",
            "list": "[\"2026-01-02T00:00:00Z\"]",
        }))
    );
    let t = Instant::now();
    let out = h.run("sleepy").await;
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(out.status, RunStatus::Failed);
    assert!(
        out.error
            .unwrap()
            .contains("sleep() is not available in runbooks")
    );
}
