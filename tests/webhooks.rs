//! Webhooks through a real daemon over real HTTP: every auth preset, replays,
//! limits on size and type, payloads as data, and durability across kill -9.

mod common;

use std::time::Duration;

use common::Deployment;
use common::daemon::Daemon;
use common::http::{client, send, send_all};
use runbookd::http::hex_hmac;
use runbookd::store::RunStatus;

const LIMIT: Duration = Duration::from_secs(30);
const SECRET: &str = "It's a Secret to Everybody";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn deployment() -> Deployment {
    let d = Deployment::new();
    for (name, auth) in [
        ("gh", "github"),
        ("stripe", "stripe"),
        ("slack", "slack"),
        ("std", "standard"),
        ("pd", "pagerduty"),
    ] {
        d.runbook(
            &format!("{name}.yaml"),
            &format!("secrets: [HOOK_SECRET]\nconcurrency: allow\ntriggers:\n  - webhook: {{ auth: {auth}, secret: HOOK_SECRET }}\nrun: trigger.body\n"),
        );
    }
    d.runbook(
        "am.yaml",
        concat!(
            "secrets: [AM_TOKEN]\nconcurrency: allow\n",
            "triggers:\n  - webhook:\n      auth: bearer\n      secret: AM_TOKEN\n",
            "      dedup: 'trigger.body.groupKey + \"|\" + trigger.body.status'\n",
            "      when: 'trigger.body.status == \"firing\"'\n",
            "run: |\n  let a = trigger.body.alerts[0];\n",
            "  #{ alertname: a.labels.alertname, instance: a.labels.instance, count: trigger.body.alerts.len(), delivery: trigger.delivery_id,\n",
            "     auth_header: trigger.headers.authorization }\n",
        ),
    );
    d
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HOOK_SECRET", SECRET),
        ("AM_TOKEN", "am-token-1-of-16-bytes"),
        ("STD_SECRET", "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM="),
    ]
}

fn github(url: &str, body: &str, delivery: &str, secret: &str) -> reqwest::RequestBuilder {
    client()
        .post(format!("{url}/hooks/gh"))
        .header("content-type", "application/json")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            format!("sha256={}", hex_hmac(secret.as_bytes(), &[body.as_bytes()])),
        )
        .body(body.to_string())
}

#[test]
fn each_signature_preset_accepts_good_and_refuses_bad_requests() {
    let d = deployment();
    let daemon = Daemon::start(&d, &env());
    let url = &daemon.url;
    let body = r#"{"id":"evt_1","ok":true}"#;

    // GitHub: the published vector's secret; a good signature, a wrong one, none.
    assert_eq!(send(github(url, body, "d-1", SECRET)).status, 202);
    assert_eq!(send(github(url, body, "d-2", "wrong")).status, 401);
    let unsigned = send(
        client()
            .post(format!("{url}/hooks/gh"))
            .header("content-type", "application/json")
            .body(body),
    );
    assert_eq!(
        (unsigned.status, unsigned.content_type.as_str()),
        (401, "application/problem+json")
    );
    assert_eq!(unsigned.body["detail"], "authentication failed");

    // Stripe: t=...,v1=... over "{t}.{body}", 300 s tolerance either way.
    let stripe = |t: i64| {
        let sig = hex_hmac(
            SECRET.as_bytes(),
            &[t.to_string().as_bytes(), b".", body.as_bytes()],
        );
        client()
            .post(format!("{url}/hooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", format!("t={t},v1=deadbeef,v1={sig}"))
            .body(body)
    };
    assert_eq!(send(stripe(now())).status, 202);
    assert_eq!(send(stripe(now() - 400)).status, 401, "stale");
    assert_eq!(send(stripe(now() + 400)).status, 401, "from the future");

    // Slack: v0=hex over "v0:{ts}:{body}", form-encoded by default.
    let form = "token=x&command=%2Fdeploy&text=hello";
    let slack = |t: i64| {
        let sig = hex_hmac(
            SECRET.as_bytes(),
            &[b"v0:", t.to_string().as_bytes(), b":", form.as_bytes()],
        );
        client()
            .post(format!("{url}/hooks/slack"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", t.to_string())
            .header("x-slack-signature", format!("v0={sig}"))
            .body(form)
    };
    let ok = send(slack(now()));
    assert_eq!(ok.status, 202, "{}", ok.text);
    assert_eq!(send(slack(now() - 301)).status, 401);

    // PagerDuty: several v1= signatures (rotation); any match is enough.
    let sig = hex_hmac(SECRET.as_bytes(), &[body.as_bytes()]);
    let pd = send(
        client()
            .post(format!("{url}/hooks/pd"))
            .header("content-type", "application/json")
            .header("x-webhook-id", "pd-1")
            .header("x-pagerduty-signature", format!("v1=00ff00,v1={sig}"))
            .body(body),
    );
    assert_eq!(pd.status, 202, "{}", pd.text);

    let runs = daemon.wait_runs("four runs", LIMIT, |r| {
        r.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 4
    });
    let slack_run = runs.iter().find(|r| r.runbook == "slack").unwrap();
    assert_eq!(
        slack_run.output.as_ref().unwrap()["command"],
        "/deploy",
        "form fields reach the script"
    );
    let deliveries = send(client().get(format!("{url}/api/v1/deliveries?runbook=gh")));
    let list = deliveries.body["deliveries"].as_array().unwrap();
    assert_eq!(
        list.len(),
        1,
        "failed authentications are not stored: {list:?}"
    );
    assert_eq!(list[0]["headers"]["x-hub-signature-256"], "***");
    assert_eq!(list[0]["dedup_key"], "d-1");
    let metrics = send(client().get(format!("{url}/metrics"))).text;
    assert!(
        metrics.contains(
            "runbookd_webhook_deliveries_total{runbook=\"gh\",result=\"unauthorized\"} 2"
        ),
        "{metrics}"
    );
}

#[test]
fn standard_webhooks_sign_id_timestamp_and_body() {
    let d = Deployment::new();
    d.runbook("std.yaml", "secrets: [STD_SECRET]\ntriggers:\n  - webhook: { auth: standard, secret: STD_SECRET }\nrun: trigger.body.n\n");
    let daemon = Daemon::start(&d, &env());
    let key = b"secret-key-for-tests";
    let body = r#"{"n":7}"#;
    let post = |id: &str, t: i64, key: &[u8]| {
        use base64::Engine as _;
        let mac = hex::decode(hex_hmac(
            key,
            &[
                id.as_bytes(),
                b".",
                t.to_string().as_bytes(),
                b".",
                body.as_bytes(),
            ],
        ))
        .unwrap();
        let sig = base64::engine::general_purpose::STANDARD.encode(mac);
        client()
            .post(format!("{}/hooks/std", daemon.url))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", t.to_string())
            .header("webhook-signature", format!("v1,bm90LWl0 v1,{sig}"))
            .body(body)
    };
    let first = send(post("msg_1", now(), key));
    assert_eq!(first.status, 202, "{}", first.text);
    let again = send(post("msg_1", now(), key));
    assert_eq!(
        (
            again.status,
            &again.body["run_id"],
            &again.body["duplicate"]
        ),
        (200, &first.body["run_id"], &serde_json::json!(true))
    );
    assert_eq!(send(post("msg_2", now() - 600, key)).status, 401);
    assert_eq!(send(post("msg_3", now(), b"another-key")).status, 401);
}

#[test]
fn a_replayed_delivery_starts_one_run_even_when_requests_race() {
    let d = deployment();
    let daemon = Daemon::start(&d, &env());
    let body = r#"{"action":"opened"}"#;
    let replies = send_all(
        (0..24)
            .map(|_| github(&daemon.url, body, "same-guid", SECRET))
            .collect(),
    );
    let accepted: Vec<_> = replies.iter().filter(|r| r.status == 202).collect();
    assert_eq!(
        accepted.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let run = &accepted[0].body["run_id"];
    assert!(
        replies.iter().all(|r| &r.body["run_id"] == run),
        "every reply names the one run"
    );
    assert!(
        replies
            .iter()
            .filter(|r| r.status == 200)
            .all(|r| r.body["duplicate"] == true)
    );
    let again = send(github(&daemon.url, body, "same-guid", SECRET));
    assert_eq!((again.status, &again.body["run_id"]), (200, run));
    let runs = daemon.wait_runs("the one run", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Succeeded)
    });
    assert_eq!(runs.iter().filter(|r| r.runbook == "gh").count(), 1);
    let listed = send(client().get(format!(
        "{}/api/v1/deliveries?runbook=gh&limit=100",
        daemon.url
    )));
    assert_eq!(
        listed.body["deliveries"].as_array().unwrap().len(),
        25,
        "every delivery is in the log"
    );

    // A sender's 60,000-character delivery id is kept as its digest, and a
    // repeat of it is still the same delivery.
    let long = "x".repeat(60_000);
    let first = send(github(&daemon.url, body, &long, SECRET));
    assert_eq!(first.status, 202, "{}", first.text);
    let again = send(github(&daemon.url, body, &long, SECRET));
    assert_eq!(
        (
            again.status,
            &again.body["run_id"],
            &again.body["duplicate"]
        ),
        (200, &first.body["run_id"], &serde_json::json!(true))
    );
    let listed = send(client().get(format!(
        "{}/api/v1/deliveries?runbook=gh&limit=2",
        daemon.url
    )));
    let keys: Vec<_> = listed.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dedup_key"].clone())
        .collect();
    use sha2::Digest;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&long)));
    assert_eq!(keys, [serde_json::json!(digest), serde_json::json!(digest)]);
}

#[test]
fn size_type_and_unknown_paths_are_refused_before_anything_is_recorded() {
    let d = deployment();
    let daemon = Daemon::start(&d, &env());
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let too_big = send(github(&daemon.url, &big, "big", SECRET));
    assert_eq!(too_big.status, 413);
    // The content type is judged after the signature: strangers learn nothing from it.
    let unsigned_plain = send(
        client()
            .post(format!("{}/hooks/gh", daemon.url))
            .header("content-type", "text/plain")
            .body("hi"),
    );
    assert_eq!(unsigned_plain.status, 401);
    // A path no runbook answers at gets the same answer, to the byte: a
    // scanner cannot tell which runbooks exist.
    let unknown = send(
        client()
            .post(format!("{}/hooks/nothing-here", daemon.url))
            .header("content-type", "text/plain")
            .body("hi"),
    );
    assert_eq!(
        (unknown.status, &unknown.content_type, &unknown.text),
        (
            unsigned_plain.status,
            &unsigned_plain.content_type,
            &unsigned_plain.text
        )
    );
    let unknown_big = send(
        client()
            .post(format!("{}/hooks/nothing-here", daemon.url))
            .header("content-type", "application/json")
            .body(big.clone()),
    );
    assert_eq!(
        (unknown_big.status, &unknown_big.text),
        (413, &too_big.text)
    );
    let plain = send(
        client()
            .post(format!("{}/hooks/gh", daemon.url))
            .header("content-type", "text/plain")
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hex_hmac(SECRET.as_bytes(), &[b"hi"])),
            )
            .body("hi"),
    );
    assert_eq!(
        (plain.status, plain.body["detail"].as_str()),
        (415, Some("this webhook takes application/json"))
    );
    // The operator sees why in the log (and in the deliveries counter).
    daemon.wait_for_line("reason=\"no runbook answers at this path\"", LIMIT);
    let listed = send(client().get(format!("{}/api/v1/deliveries", daemon.url)));
    assert_eq!(listed.body["deliveries"], serde_json::json!([]));
}

#[test]
fn an_alertmanager_payload_reaches_the_script_as_data() {
    let d = deployment();
    let daemon = Daemon::start(&d, &env());
    // The Alertmanager v4 body from providers.md §4.1.
    let firing = include_str!("fixtures/alertmanager-firing.json");
    let post = |body: String| {
        client()
            .post(format!("{}/hooks/am", daemon.url))
            .header("content-type", "application/json")
            .bearer_auth("am-token-1-of-16-bytes")
            .body(body)
    };
    let first = send(post(firing.to_string()));
    assert_eq!(first.status, 202, "{}", first.text);
    // Alertmanager repeats the group every group_interval: same groupKey + status, one run.
    assert_eq!(send(post(firing.to_string())).body["duplicate"], true);
    let resolved = firing.replace("\"status\": \"firing\"", "\"status\": \"resolved\"");
    let filtered = send(post(resolved));
    assert_eq!(
        (filtered.status, &filtered.body["outcome"]),
        (200, &serde_json::json!("filtered"))
    );
    assert_eq!(
        send(
            client()
                .post(format!("{}/hooks/am", daemon.url))
                .header("content-type", "application/json")
                .bearer_auth("nope")
                .body(firing)
        )
        .status,
        401
    );

    // Script-like text in a payload stays a string.
    let sneaky = firing.replace("polygon-rpc-2:8545", "\\\"; fail(\\\"pwned\\\"); \\\"");
    let sneaky = sneaky.replace("\"groupKey\": \"", "\"groupKey\": \"second-");
    let second = send(post(sneaky));
    assert_eq!(second.status, 202, "{}", second.text);

    let runs = daemon.wait_runs("two runs", LIMIT, |r| {
        r.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 2
    });
    let am: Vec<_> = runs.iter().filter(|r| r.runbook == "am").collect();
    assert_eq!(am.len(), 2);
    let out = am[0].output.as_ref().unwrap();
    assert_eq!(out["alertname"], "RPCNodeBehind");
    assert_eq!(out["count"], 1);
    assert_eq!(out["delivery"], first.body["delivery_id"]);
    assert_eq!(out["auth_header"], "***", "scripts never see credentials");
    assert_eq!(
        am[1].output.as_ref().unwrap()["instance"],
        "\"; fail(\"pwned\"); \""
    );
}

#[test]
fn every_accepted_delivery_runs_after_a_kill_9() {
    let d = Deployment::new();
    d.runbook(
        "durable.yaml",
        "secrets: [HOOK_SECRET]\nconcurrency: allow\ntriggers:\n  - webhook: { auth: github, secret: HOOK_SECRET }\nrun: |\n  let end = now() + duration(\"300ms\");\n  while now() < end { state::get(\"x\"); }\n  trigger.body.n\n",
    );
    let mut daemon = Daemon::start(&d, &env());
    let reqs = (0..60).map(|n| {
        let body = format!("{{\"n\":{n}}}");
        client()
            .post(format!("{}/hooks/durable", daemon.url))
            .header("content-type", "application/json")
            .header("x-github-delivery", format!("g-{n}"))
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hex_hmac(SECRET.as_bytes(), &[body.as_bytes()])),
            )
            .body(body)
    });
    let replies = send_all(reqs.collect());
    assert!(
        replies.iter().all(|r| r.status == 202),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    daemon.signal("KILL");
    daemon.wait_exit(LIMIT);
    let accepted: Vec<i64> = replies
        .iter()
        .map(|r| r.body["run_id"].as_i64().unwrap())
        .collect();

    let daemon = Daemon::start(&d, &env());
    let runs = daemon.wait_runs(
        "every accepted delivery ran",
        Duration::from_secs(60),
        |r| {
            accepted.iter().all(|id| {
                r.iter()
                    .any(|run| run.id == *id && run.status == RunStatus::Succeeded)
            })
        },
    );
    let mut outputs: Vec<i64> = runs
        .iter()
        .filter_map(|r| r.output.as_ref()?.as_i64())
        .collect();
    outputs.sort();
    assert_eq!(
        outputs,
        (0..60).collect::<Vec<_>>(),
        "each payload ran exactly once"
    );
}

#[test]
fn while_draining_webhooks_are_told_to_retry() {
    let d = Deployment::new();
    d.runbook(
        "busy.yaml",
        "secrets: [HOOK_SECRET]\ntriggers:\n  - webhook: { auth: github, secret: HOOK_SECRET }\nrun: |\n  let end = now() + duration(\"30s\");\n  while now() < end { state::get(\"x\"); }\n",
    );
    let mut daemon = Daemon::start(
        &d,
        &[("HOOK_SECRET", SECRET), ("RUNBOOKD_SHUTDOWN_GRACE", "5s")],
    );
    let body = r#"{"n":1}"#;
    let post = |id: &str| {
        client()
            .post(format!("{}/hooks/busy", daemon.url))
            .header("content-type", "application/json")
            .header("x-github-delivery", id)
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hex_hmac(SECRET.as_bytes(), &[body.as_bytes()])),
            )
            .body(body)
    };
    assert_eq!(send(post("first")).status, 202);
    daemon.wait_runs("the run is going", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Running)
    });
    daemon.signal("TERM");
    daemon.wait_for_line("shutting down: waiting up to 5s", LIMIT);
    let refused = common::http::send_with_headers(post("second"));
    assert_eq!(refused.0.status, 503, "{}", refused.0.text);
    assert_eq!(refused.1.as_deref(), Some("5"), "Retry-After");
    let (code, _) = daemon.wait_exit(LIMIT);
    assert_eq!(code, Some(0));
    // Nothing new was accepted; the interrupted run waits, queued, for the next start.
    let runs = daemon.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Queued);
}

/// Run the daemon with its database on an 8 MiB filesystem of its own (a
/// tmpfs mounted in a private mount namespace), then fill it with a file but
/// for 256 KiB: `None` when this machine does not allow that.
fn on_a_small_disk(d: &Deployment, env: &[(&str, &str)]) -> Option<(Daemon, std::path::PathBuf)> {
    let disk = d.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mount = "mount -t tmpfs -o size=8m tmpfs \"$2\"";
    let probe = std::process::Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            mount,
            "sh",
            "-",
        ])
        .arg(&disk)
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "{mount} && exec \"$1\" --database \"sqlite://$2/runbookd.db\" serve --listen 127.0.0.1:0"
        ))
        .args(["sh", env!("CARGO_BIN_EXE_runbookd")])
        .arg(&disk);
    let mut daemon = Daemon::spawn(d, cmd, env, String::new());
    // The daemon's view of its disk, from outside its mount namespace.
    let inside = std::path::PathBuf::from(format!("/proc/{}/root", daemon.pid()))
        .join(disk.strip_prefix("/").unwrap());
    daemon.db = format!("sqlite://{}", inside.join("runbookd.db").display());
    // statfs of the path itself (df would look the path up in this
    // process's own mount table).
    let statfs = std::process::Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(&inside)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&statfs.stdout);
    let avail: u64 = match text.split_whitespace().collect::<Vec<_>>()[..] {
        [blocks, size] => blocks.parse::<u64>().unwrap() * size.parse::<u64>().unwrap(),
        _ => panic!("stat -f: {text}"),
    };
    assert!(avail < 8 << 20, "statfs looked at the small disk: {avail}");
    std::fs::write(
        inside.join("filler"),
        vec![0u8; avail.saturating_sub(256 * 1024) as usize],
    )
    .unwrap();
    Some((daemon, inside))
}

#[test]
fn a_full_disk_refuses_new_deliveries_clearly_keeps_the_accepted_ones_and_recovers() {
    let d = Deployment::new();
    d.runbook(
        "intake.yaml",
        "secrets: [INTAKE_TOKEN]\nconcurrency: allow\ntriggers:\n  - webhook: { auth: bearer, secret: INTAKE_TOKEN }\nrun: trigger.body.n\n",
    );
    let env = [("INTAKE_TOKEN", "intake-token-of-16-bytes")];
    let Some((daemon, disk)) = on_a_small_disk(&d, &env) else {
        eprintln!(
            "skipped: this machine cannot mount a small filesystem (unshare -m, mount -t tmpfs)"
        );
        return;
    };
    let post = |n: u64| {
        // 40 KiB of payload each, so the disk fills within a few dozen.
        let body = serde_json::json!({ "n": n, "pad": "x".repeat(40 * 1024) });
        send(
            client()
                .post(format!("{}/hooks/intake", daemon.url))
                .bearer_auth("intake-token-of-16-bytes")
                .json(&body),
        )
    };
    let mut accepted = Vec::new();
    let refused = loop {
        let n = accepted.len() as u64;
        assert!(n < 200, "the small disk never filled");
        let r = post(n);
        match r.status {
            202 => accepted.push((n, r.body["run_id"].as_i64().unwrap())),
            _ => break r,
        }
    };
    assert!(
        !accepted.is_empty(),
        "nothing fit on the disk: {}",
        refused.text
    );
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert!(
        refused.text.contains("disk holding the database is full"),
        "the refusal says why: {}",
        refused.text
    );
    daemon.wait_for_line("the disk holding the database is full", LIMIT);
    // Still serving: the API answers while the disk is full, and says it is
    // not ready for traffic, and why.
    assert_eq!(
        send(client().get(format!("{}/healthz", daemon.url))).status,
        200
    );
    let ready = || send(client().get(format!("{}/readyz", daemon.url)));
    let unready = ready();
    assert_eq!(
        (unready.status, unready.body),
        (
            503,
            serde_json::json!({
                "store": true, "writes": false, "runbooks_loaded": true, "shutting_down": false,
                "writes_failing": "the disk holding the database is full; free space and retry"
            })
        )
    );

    // Space is freed: ready again before anything is written, new deliveries
    // are accepted, and every delivery accepted before the disk filled is on
    // record and has run.
    std::fs::remove_file(disk.join("filler")).unwrap();
    let again = ready();
    assert_eq!(
        (again.status, again.body),
        (
            200,
            serde_json::json!({
                "store": true, "writes": true, "runbooks_loaded": true, "shutting_down": false
            })
        )
    );
    let after = post(1_000);
    assert_eq!(after.status, 202, "{}", after.text);
    accepted.push((1_000, after.body["run_id"].as_i64().unwrap()));
    // Through the daemon's API: its database is only visible from inside
    // its mount namespace.
    let deadline = std::time::Instant::now() + LIMIT;
    for (n, id) in &accepted {
        loop {
            let r = send(client().get(format!("{}/api/v1/runs/{id}", daemon.url)));
            assert_eq!(r.status, 200, "accepted run {id} is on record: {}", r.text);
            if r.body["run"]["status"] == "succeeded" {
                assert_eq!(r.body["run"]["output"], serde_json::json!(n));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {id} (delivery {n}) did not run after space was freed: {:?}\n{}",
                r.body["run"]["status"],
                daemon
                    .text()
                    .lines()
                    .filter(|l| !l.contains("xxxx"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_json_body_that_repeats_a_key_is_rejected_not_run() {
    let d = deployment();
    let daemon = Daemon::start(&d, &env());
    // Two parsers may keep either value: the sender's meaning is unknown.
    let twice = send(github(
        &daemon.url,
        r#"{"action":"close","action":"open"}"#,
        "twice",
        SECRET,
    ));
    assert_eq!(
        (twice.status, &twice.body),
        (
            422,
            &serde_json::json!({
                "type": "about:blank", "title": "Unprocessable delivery", "status": 422,
                "detail": "the body is not valid JSON: the key \"action\" appears twice in one object at line 1 column 26"
            })
        ),
        "{}",
        twice.text
    );
    // Nested objects too; the same key in two objects is fine.
    let nested = send(github(
        &daemon.url,
        r#"{"a":{"k":1,"k":2}}"#,
        "nested",
        SECRET,
    ));
    assert_eq!(nested.status, 422, "{}", nested.text);
    let fine = send(github(
        &daemon.url,
        r#"{"a":{"k":1},"b":{"k":2},"n":[1.5,-2,null,true]}"#,
        "fine",
        SECRET,
    ));
    assert_eq!(fine.status, 202, "{}", fine.text);
    let runs = daemon.wait_runs("the valid delivery ran", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Succeeded)
    });
    assert_eq!(runs.len(), 1, "the rejected deliveries ran nothing");
    assert_eq!(
        runs[0].output,
        Some(serde_json::json!({"a": {"k": 1}, "b": {"k": 2}, "n": [1.5, -2, null, true]}))
    );
}

#[test]
fn credentials_in_the_query_string_are_masked_where_they_are_kept() {
    let d = deployment();
    let daemon = Daemon::start(&d, &env());
    let body = r#"{"n":1}"#;
    let sent = send(
        client()
            .post(format!(
                "{}/hooks/gh?access_token=tok-live-0123456789&api_key=k-42&page=2&sig=abc",
                daemon.url
            ))
            .header("content-type", "application/json")
            .header("x-github-delivery", "q-1")
            .header(
                "x-hub-signature-256",
                format!("sha256={}", hex_hmac(SECRET.as_bytes(), &[body.as_bytes()])),
            )
            .body(body),
    );
    assert_eq!(sent.status, 202, "{}", sent.text);
    let id = sent.body["run_id"].as_i64().unwrap();
    let run = send(client().get(format!("{}/api/v1/runs/{id}", daemon.url)));
    assert_eq!(
        run.body["run"]["trigger_data"]["query"],
        serde_json::json!({"access_token": "***", "api_key": "***", "page": "2", "sig": "***"}),
        "{}",
        run.text
    );
    assert!(!run.text.contains("tok-live-0123456789"), "{}", run.text);
}
