//! The HTTP API through a real daemon: token auth, runbooks, manual runs with
//! typed params, pagination, cancel, reload, health and metrics.

mod common;

use std::time::Duration;

use common::Deployment;
use common::daemon::Daemon;
use common::http::{client, send};
use runbookd::store::RunStatus;

const TOKEN: &str = "api-token-for-tests";

fn deployment() -> Deployment {
    let d = Deployment::new();
    d.runbook(
        "sum.yaml",
        "description: Add numbers.\nconcurrency: allow\nparams:\n  xs: { type: list }\n  scale: { type: integer, default: 1 }\nrun: |\n  let t = 0;\n  for x in params.xs { t += x; }\n  t * params.scale\n",
    );
    d.runbook(
        "slow.yaml",
        "triggers:\n  - manual\n  - cron: \"0 9 * * 1-5\"\n    timezone: Europe/Paris\nrun: |\n  let end = now() + duration(\"20s\");\n  while now() < end { state::get(\"x\"); }\n",
    );
    d
}

fn get(daemon: &Daemon, path: &str) -> common::http::Reply {
    send(
        client()
            .get(format!("{}{path}", daemon.url))
            .bearer_auth(TOKEN),
    )
}

fn post(daemon: &Daemon, path: &str, body: serde_json::Value) -> common::http::Reply {
    send(
        client()
            .post(format!("{}{path}", daemon.url))
            .bearer_auth(TOKEN)
            .json(&body),
    )
}

#[test]
fn the_api_needs_the_token_and_runs_runbooks_with_typed_params() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[("RUNBOOKD_API_TOKEN", TOKEN)]);
    let anonymous = send(client().get(format!("{}/api/v1/runbooks", daemon.url)));
    assert_eq!(
        (anonymous.status, anonymous.content_type.as_str()),
        (401, "application/problem+json")
    );
    let wrong = send(
        client()
            .get(format!("{}/api/v1/runbooks", daemon.url))
            .bearer_auth("nope"),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(
        send(client().get(format!("{}/healthz", daemon.url))).status,
        200,
        "health needs no token"
    );

    let list = get(&daemon, "/api/v1/runbooks");
    assert_eq!(list.status, 200);
    let names: Vec<&str> = list.body["runbooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["slow", "sum"]);
    let slow = get(&daemon, "/api/v1/runbooks/slow").body;
    assert!(
        slow["next_fire"].as_str().unwrap().ends_with(":00:00Z"),
        "{slow}"
    );
    assert_eq!(
        slow["triggers"],
        serde_json::json!(["manual", "cron 0 9 * * 1-5 (Europe/Paris)"])
    );

    let done = post(
        &daemon,
        "/api/v1/runbooks/sum/runs?wait=true",
        serde_json::json!({"params": {"xs": [1, 2, 3], "scale": 10}}),
    );
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(
        (
            done.body["run"]["status"].as_str(),
            &done.body["run"]["output"]
        ),
        (Some("succeeded"), &serde_json::json!(60))
    );
    let bad = post(
        &daemon,
        "/api/v1/runbooks/sum/runs",
        serde_json::json!({"params": {"xs": "1,2", "scael": 2}}),
    );
    assert_eq!(
        (bad.status, bad.content_type.as_str()),
        (400, "application/problem+json")
    );
    assert_eq!(
        bad.body["detail"],
        "runbook sum has no param \"scael\" (did you mean \"scale\"?); param xs must be of type list, not \"1,2\""
    );
    let missing = post(&daemon, "/api/v1/runbooks/sum/runs", serde_json::json!({}));
    assert_eq!(
        missing.body["detail"],
        "param xs is required; give it with -p xs=VALUE"
    );
    assert_eq!(
        post(&daemon, "/api/v1/runbooks/nope/runs", serde_json::json!({})).status,
        404
    );

    // A second run of a `forbid` runbook while one is active is refused; cancel ends it.
    let first = post(&daemon, "/api/v1/runbooks/slow/runs", serde_json::json!({}));
    assert_eq!(first.status, 202);
    let id = first.body["run_id"].as_i64().unwrap();
    let second = post(&daemon, "/api/v1/runbooks/slow/runs", serde_json::json!({}));
    assert_eq!(second.status, 409, "{}", second.text);
    daemon.wait_runs("slow running", Duration::from_secs(30), |r| {
        r.iter()
            .any(|r| r.id == id && r.status == RunStatus::Running)
    });
    let cancel = post(
        &daemon,
        &format!("/api/v1/runs/{id}/cancel"),
        serde_json::json!({}),
    );
    assert_eq!(cancel.status, 200, "{}", cancel.text);
    let runs = daemon.wait_runs("slow cancelled", Duration::from_secs(30), |r| {
        r.iter()
            .any(|r| r.id == id && r.status == RunStatus::Cancelled)
    });
    assert!(runs.iter().all(|r| r.status != RunStatus::Running));
    let again = post(
        &daemon,
        &format!("/api/v1/runs/{id}/cancel"),
        serde_json::json!({}),
    );
    assert_eq!(again.status, 409);

    let detail = get(&daemon, &format!("/api/v1/runs/{id}"));
    assert_eq!(detail.body["run"]["status"], "cancelled");
    assert_eq!(detail.body["version"]["runbook"], "slow");
    assert_eq!(get(&daemon, "/api/v1/runs/999999").status, 404);
}

#[test]
fn runs_are_listed_newest_first_with_a_cursor() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[]);
    for i in 0..5 {
        assert_eq!(
            send(
                client()
                    .post(format!("{}/api/v1/runbooks/sum/runs?wait=true", daemon.url))
                    .json(&serde_json::json!({"params": {"xs": [i]}}))
            )
            .status,
            200
        );
    }
    // No token configured on loopback: open.
    let page = send(client().get(format!("{}/api/v1/runs?runbook=sum&limit=2", daemon.url)));
    let ids: Vec<i64> = page.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [5, 4]);
    assert_eq!(page.body["next_cursor"], 4);
    let next = send(client().get(format!(
        "{}/api/v1/runs?runbook=sum&limit=2&cursor=4",
        daemon.url
    )));
    let ids: Vec<i64> = next.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [3, 2]);
    let failed = send(client().get(format!("{}/api/v1/runs?status=failed", daemon.url)));
    assert_eq!(failed.body["runs"], serde_json::json!([]));
    let bad = send(client().get(format!("{}/api/v1/runs?status=faild", daemon.url)));
    assert_eq!(bad.status, 400);
    let since = send(client().get(format!(
        "{}/api/v1/runs?since=2999-01-01T00:00:00Z",
        daemon.url
    )));
    assert_eq!(since.body["runs"], serde_json::json!([]));
}

#[test]
fn reload_readiness_and_metrics() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[]);
    let ready = send(client().get(format!("{}/readyz", daemon.url)));
    assert_eq!(
        (ready.status, &ready.body),
        (
            200,
            &serde_json::json!({"store": true, "writes": true, "runbooks_loaded": true, "shutting_down": false})
        )
    );
    d.runbook("extra.yaml", "run: '1'\n");
    d.runbook("broken.yaml", "run: 'nope'\n");
    let reloaded = send(client().post(format!("{}/api/v1/reload", daemon.url)));
    assert_eq!(reloaded.body["runbooks"], 3);
    assert_eq!(
        reloaded.body["errors"][0],
        "runbooks/broken.yaml:1:7: script does not compile: Undefined variable: nope"
    );
    assert_eq!(
        send(client().post(format!(
            "{}/api/v1/runbooks/extra/runs?wait=true",
            daemon.url
        )))
        .status,
        200
    );

    let text = send(client().get(format!("{}/metrics", daemon.url))).text;
    assert!(
        text.contains("# TYPE runbookd_runs_total counter"),
        "{text}"
    );
    assert!(
        text.contains("runbookd_runs_total{runbook=\"extra\",status=\"succeeded\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE runbookd_run_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("runbookd_queue_depth 0"), "{text}");
    // Every sample line is `name{labels} value` in the Prometheus text format.
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value in {line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("runbookd_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name in {line}"
        );
        assert!(
            !series.contains('{') || series.ends_with('}'),
            "bad labels in {line}"
        );
    }
}

#[test]
fn a_public_address_needs_a_token() {
    let d = deployment();
    let ran = d.cli(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(ran.code, 3);
    assert!(
        ran.stderr
            .contains("error: refusing to listen on 0.0.0.0:0 without an API token"),
        "{}",
        ran.stderr
    );
}

#[test]
fn framework_errors_are_problem_json_too() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[]);
    for (req, status) in [
        (
            client().get(format!("{}/api/v1/runs?limit=abc", daemon.url)),
            400,
        ),
        (client().get(format!("{}/api/v1/runs/abc", daemon.url)), 400),
        (
            client().delete(format!("{}/api/v1/runs/1", daemon.url)),
            405,
        ),
        (
            client()
                .post(format!("{}/api/v1/runbooks/sum/runs", daemon.url))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (
            client()
                .post(format!("{}/api/v1/runbooks/sum/runs", daemon.url))
                .json(&serde_json::json!({"parms": {}})),
            422,
        ),
    ] {
        let r = send(req);
        assert_eq!(
            (r.status, r.content_type.as_str()),
            (status, "application/problem+json"),
            "{}",
            r.text
        );
        assert!(
            !r.body["detail"].as_str().unwrap_or("").is_empty(),
            "{}",
            r.text
        );
    }
}

/// How a raw connection ends: `closed` when the server closes it within `limit`.
fn closed_within(conn: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    conn.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response; keep reading until the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_idle_and_surplus_connections_are_closed_and_healthz_keeps_answering() {
    use std::io::Write;
    use std::net::TcpStream;
    let d = deployment();
    std::fs::write(
        d.path().join("runbookd.yaml"),
        "server:\n  header_timeout: 1s\n  idle_timeout: 2s\n  max_connections: 8\n",
    )
    .unwrap();
    let daemon = Daemon::start(&d, &[]);
    let addr = daemon.url.trim_start_matches("http://").to_string();
    let open = || TcpStream::connect(&addr).unwrap();
    // Slowloris: headers that never end. Silent clients. A keep-alive client gone quiet.
    let mut slow: Vec<TcpStream> = (0..3).map(|_| open()).collect();
    for c in &mut slow {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
    }
    let mut silent: Vec<TcpStream> = (0..3).map(|_| open()).collect();
    let mut kept = open();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Two more fill the cap; the ones after it are closed at once.
    let _filling: Vec<TcpStream> = (0..1).map(|_| open()).collect();
    let mut surplus = open();
    assert!(
        closed_within(&mut surplus, Duration::from_secs(1)),
        "a connection over the cap stays open"
    );

    for c in slow.iter_mut().chain(silent.iter_mut()) {
        assert!(
            closed_within(c, Duration::from_secs(5)),
            "a slow or silent connection stays open"
        );
    }
    assert!(
        closed_within(&mut kept, Duration::from_secs(5)),
        "an idle keep-alive connection stays open"
    );
    let health = send(client().get(format!("{}/healthz", daemon.url)));
    assert_eq!((health.status, health.text.as_str()), (200, "ok\n"));
}
