//! Every way into a run goes through one intake: `concurrency: replace`
//! behaves the same whether the newer run comes from a person (the API), a
//! webhook delivery or a schedule slot. The older run is cancelled, the
//! newer one starts once it has ended.

mod common;

use std::time::Duration;

use common::Deployment;
use common::daemon::Daemon;
use common::http::{client, send};
use runbookd::store::{RunRow, RunStatus};

/// A run that waits on a provider that never answers, until it is stopped.
fn waits_on(host: &str) -> String {
    format!(
        "http: {{ allow: [\"{host}\"] }}\ntimeout: 5m\nrun: |\n  http::get(\"http://{host}/never\", #{{ timeout: \"4m\" }})\n"
    )
}

fn status_of(runs: &[RunRow], id: i64) -> Option<RunStatus> {
    runs.iter().find(|r| r.id == id).map(|r| r.status)
}

/// Wait until run `newer` runs and `older` was cancelled to make room for it.
fn replaced(daemon: &Daemon, older: i64, newer: i64, path: &str) {
    let runs = daemon.wait_runs(path, Duration::from_secs(20), |r| {
        status_of(r, older) == Some(RunStatus::Cancelled)
            && status_of(r, newer) == Some(RunStatus::Running)
    });
    let old = runs.iter().find(|r| r.id == older).unwrap();
    let new = runs.iter().find(|r| r.id == newer).unwrap();
    assert!(
        new.started_at >= old.finished_at,
        "{path}: the newer run started before the older one ended"
    );
}

#[test]
fn replace_cancels_the_active_run_on_every_path() {
    // Connections are accepted (by the kernel) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let d = Deployment::new();
    d.runbook(
        "slow.yaml",
        &format!(
            "secrets: [HOOK_TOKEN]\nconcurrency: replace\ntriggers:\n  - manual\n  - webhook: {{ auth: bearer, secret: HOOK_TOKEN }}\n{}",
            waits_on(&host)
        ),
    );
    d.runbook(
        "tick.yaml",
        &format!(
            "concurrency: replace\ntriggers:\n  - every: 2s\n{}",
            waits_on(&host)
        ),
    );
    let daemon = Daemon::start(&d, &[("HOOK_TOKEN", "hook-token-long-enough-1")]);
    let api = |what: &str| {
        let reply = send(client().post(format!("{}/api/v1/runbooks/slow/runs", daemon.url)));
        assert_eq!(reply.status, 202, "{what}: {}", reply.text);
        reply.body["run_id"].as_i64().unwrap()
    };

    let first = api("the first run");
    daemon.wait_runs("the first run starts", Duration::from_secs(20), |r| {
        status_of(r, first) == Some(RunStatus::Running)
    });
    let by_person = api("a person's newer run");
    replaced(&daemon, first, by_person, "API");

    let hook = send(
        client()
            .post(format!("{}/hooks/slow", daemon.url))
            .bearer_auth("hook-token-long-enough-1")
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_eq!(hook.status, 202, "{}", hook.text);
    let by_hook = hook.body["run_id"].as_i64().unwrap();
    replaced(&daemon, by_person, by_hook, "webhook");

    // Each slot of the schedule replaces the one before.
    let runs = daemon.wait_runs("a slot replacing another", Duration::from_secs(20), |r| {
        let ticks: Vec<&RunRow> = r.iter().filter(|r| r.runbook == "tick").collect();
        ticks.len() >= 2
            && ticks.last().unwrap().status == RunStatus::Running
            && ticks[..ticks.len() - 1]
                .iter()
                .all(|t| t.status == RunStatus::Cancelled)
    });
    let ticks: Vec<&RunRow> = runs.iter().filter(|r| r.runbook == "tick").collect();
    for pair in ticks.windows(2) {
        assert!(pair[0].scheduled_at < pair[1].scheduled_at);
        assert!(
            pair[1].started_at >= pair[0].finished_at,
            "schedule: a slot's run started before the one it replaced ended"
        );
    }
}
