//! The shipped runbooks, end to end: the real daemon runs copies of
//! runbooks/, scripts/ and data/ against fake Zendesk, Statuspage, JSON-RPC
//! and management APIs on 127.0.0.1 and a real SMTP server; and `runbookd
//! test` passes for every shipped runbook and fails with a diff when a
//! recorded reply changes.

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::Ran;
use common::daemon::Daemon;
use common::fakes::{Evm, Recorder, Statuspage, Ticket, Zendesk};
use common::http::{Reply, client, send};
use common::shipped::{REPO, copy_dir, deploy, issue, issues, run, runtime};
use serde_json::{Value, json};

#[test]
fn runbook_tests_pass_for_every_shipped_runbook_and_fail_with_a_diff_when_a_fixture_changes() {
    let d = deploy(&[], &[], "");
    for f in std::fs::read_dir(Path::new(REPO).join("runbooks")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), d.runbooks().join(f.file_name())).unwrap();
    }
    // Enabled, with its secret unset here: tests bring their own values.
    let path = d.runbooks().join("stale-tickets.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, yaml.replace("enabled: false", "enabled: true")).unwrap();
    copy_dir(
        &Path::new(REPO).join("tests/runbooks"),
        &d.path().join("tests/runbooks"),
    );
    let ran: Ran = d.cli(&["test"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    for name in [
        "stale-tickets",
        "provider-health",
        "access-review",
        "alert-remediation",
        "daily-digest",
        "transaction-health",
    ] {
        assert!(
            ran.stdout.contains(&format!("ok    {name} › ")),
            "{name} has passing tests:\n{}",
            ran.stdout
        );
    }
    assert!(ran.stdout.contains(" passed, 0 failed"), "{}", ran.stdout);

    // A recorded reply changes: the ticket is no longer urgent.
    let fixture = d
        .path()
        .join("tests/runbooks/fixtures/zendesk/ticket-35001.json");
    let text = std::fs::read_to_string(&fixture).unwrap();
    std::fs::write(
        &fixture,
        text.replace("\"priority\": \"urgent\"", "\"priority\": \"normal\""),
    )
    .unwrap();
    let ran = d.cli(&["test", "stale-tickets"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("FAIL  stale-tickets › nudges each stale ticket once"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("        -   severity: high\n        +   severity: medium\n"),
        "the diff shows expected and actual:\n{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("5 passed, 1 failed"), "{}", ran.stdout);
    assert!(
        ran.stderr.contains("1 runbook test case(s) failed"),
        "{}",
        ran.stderr
    );

    // A webhook's `when:` decides before any run: a filtered delivery runs nothing.
    d.runbook(
        "page.yaml",
        r#"
triggers:
  - webhook: { auth: none, insecure: true, when: 'trigger.body.status == "firing"', dedup: 'trigger.body.id' }
run: |
  issues::open(`page:${trigger.body.id}`, #{ title: "paged" })
"#,
    );
    std::fs::write(
        d.path().join("tests/runbooks/page.yaml"),
        r#"
runbook: page
cases:
  - name: firing runs
    now: 2025-01-08T12:00:00Z
    trigger: { kind: webhook, body: { id: a1, status: firing } }
    expect: { dedup: a1, issues: [{ key: "page:a1" }] }
  - name: resolved is filtered
    now: 2025-01-08T12:00:00Z
    trigger: { kind: webhook, body: { id: a1, status: resolved } }
    expect: { status: filtered, dedup: a1 }
  - name: a wrong expectation of the filter fails
    now: 2025-01-08T12:00:00Z
    trigger: { kind: webhook, body: { id: b2, status: resolved } }
    expect: { dedup: a1 }
"#,
    )
    .unwrap();
    let ran = d.cli(&["test", "page"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("ok    page › firing runs"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("ok    page › resolved is filtered"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains(
            "      dedup:\n        --- expected\n        +++ actual\n        - a1\n        + b2\n"
        ) && ran
            .stdout
            .contains("        - succeeded\n        + filtered\n"),
        "{}",
        ran.stdout
    );
    std::fs::remove_file(d.path().join("tests/runbooks/page.yaml")).unwrap();

    // A misspelt key in a test file is named, with its file and line.
    std::fs::write(
        d.path().join("tests/runbooks/broken.yaml"),
        "runbook: daily-digest\ncases:\n  - name: x\n    now: 2025-01-08T08:00:00Z\n    expct: {}\n",
    )
    .unwrap();
    let ran = d.cli(&["test"]);
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr
            .contains("broken.yaml: cases[0]: unknown field `expct`")
            && ran.stderr.contains("line 5"),
        "{}",
        ran.stderr
    );
}

#[test]
fn stale_tickets_nudges_once_escalates_and_resolves_against_zendesk() {
    let rt = runtime();
    let now = Utc::now();
    let days = |n: i64| now - TimeDelta::days(n);
    let zd = rt.block_on(Zendesk::start(now, "bot@acme.example", "zd-token-7f3e"));
    zd.add_ticket(Ticket::pending(
        101,
        "Card declined, balance debited",
        days(4),
    ));
    let mut old = Ticket::pending(102, "Withdrawal not received", days(10));
    old.priority = "urgent".into();
    zd.add_ticket(old);
    zd.add_ticket(Ticket::pending(103, "Swap stuck", days(1)));
    zd.add_ticket(Ticket::pending(104, "KYC rejected", days(5)));
    zd.add_ticket(
        Ticket::pending(105, "Asked not to be chased", days(6))
            .with_tags(&["runbookd_no_autofollow"]),
    );
    // The requester of 104 answered a minute ago; search has not caught up.
    zd.set_search_lag(true);
    zd.set_status(104, "open");
    // Zendesk refuses the second write once, for a second.
    zd.rate_limit_writes(1, 1, 1);

    let d = deploy(&["stale-tickets"], &[], "");
    let daemon = Daemon::start(&d, &[("ZENDESK_TOKEN", "zd-token-7f3e")]);
    let params = json!({ "zendesk_url": zd.url(), "agent_email": "bot@acme.example" });

    let first = run(&daemon, "stale-tickets", params.clone());
    // `http.min_interval: 300ms` keeps the run's calls apart: the search, the
    // reads of 102, 104 and 101 and the writes of 102 and 101, and the
    // escalation's two reads are eight calls, so seven gaps.
    let took = |r: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(r[field].as_str().unwrap()).unwrap()
    };
    let spent = took(&first, "finished_at") - took(&first, "started_at");
    assert!(
        spent >= TimeDelta::milliseconds(7 * 300),
        "calls were not spaced: the run took {spent}"
    );
    let out = &first["output"];
    assert_eq!(out["found"], 3, "{out:#}");
    let nudged: Vec<u64> = out["nudged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect();
    assert_eq!(nudged, [102, 101], "oldest update first: {out:#}");
    assert_eq!(out["skipped"], json!([{"id": 104, "reason": "now open"}]));
    assert_eq!(out["escalated"], json!([102]));
    let writes = zd.writes();
    assert_eq!(writes.len(), 2, "one write per nudged ticket: {writes:?}");
    for w in &writes {
        assert_eq!(w.body["ticket"]["comment"]["public"], true);
        assert_eq!(w.body["ticket"]["status"], "pending");
        assert_eq!(
            w.body["ticket"]["additional_tags"],
            json!(["runbookd_followup_1"])
        );
    }
    assert!(
        zd.ticket(101)
            .unwrap()
            .tags
            .contains(&"runbookd_followup_1".to_string())
    );
    assert_eq!(zd.ticket(104).unwrap().comments.len(), 0, "104 left alone");
    assert!(
        zd.requests()
            .iter()
            .filter(|r| r.starts_with("PUT"))
            .count()
            == 3,
        "the 429 was retried: {:?}",
        zd.requests()
    );
    let open = issues(&daemon, "runbook=stale-tickets");
    assert_eq!(open.len(), 1, "{open:#?}");
    let esc = issue(&open, "zendesk:stale:102").expect("escalated");
    assert_eq!(esc["severity"], "high");
    assert_eq!(esc["link"], format!("{}/agent/tickets/102", zd.url()));

    // A day later: the same tickets are not nudged twice in the window.
    zd.reindex();
    zd.set_now(now + TimeDelta::days(1));
    let second = run(&daemon, "stale-tickets", params.clone());
    assert_eq!(zd.writes().len(), 2, "{:#}", second["output"]);
    assert_eq!(second["output"]["nudged"], json!([]));

    // The requester of 102 answers: the issue resolves.
    zd.set_status(102, "open");
    let third = run(&daemon, "stale-tickets", params);
    assert_eq!(
        third["output"]["resolved"],
        json!([102]),
        "{:#}",
        third["output"]
    );
    let all = issues(&daemon, "status=all&runbook=stale-tickets");
    assert_eq!(
        issue(&all, "zendesk:stale:102").unwrap()["status"],
        "resolved"
    );
    assert_eq!(zd.writes().len(), 2);
}

#[test]
fn provider_health_opens_after_three_failures_and_resolves_after_recovery() {
    let rt = runtime();
    let now = Utc::now();
    let sp = rt.block_on(Statuspage::start(now));
    sp.add_page(
        "acme",
        "kctbh9vrtdwd",
        "Acme Card Processor",
        &[
            ("b13yz5g2cw10", "Card Authorizations"),
            ("9397cnvk62zn", "Card Issuing API"),
        ],
    );
    sp.add_page("wallet", "w4ll3tp4g3id", "Acme Wallet", &[("api0", "API")]);
    let evm = rt.block_on(Evm::start(now));
    let head_at = now - TimeDelta::seconds(3);
    evm.set_head("ref-a", 21_000_000, head_at);
    evm.set_head("ref-b", 21_000_001, head_at);
    evm.set_head("node-1", 21_000_000, head_at);
    for n in ["ref-a", "ref-b", "node-1"] {
        evm.set_chain_id(n, 137);
    }
    // Without the every-minute schedule: the test says when checks happen.
    let d = deploy(&["provider-health"], &[("  - every: 1m\n", "")], "");
    let daemon = Daemon::start(&d, &[]);
    let params = json!({
        "statuspages": [{ "name": "acme", "url": format!("{}/acme", sp.url()), "components": ["Card Authorizations"] }],
        "chains": [{
            "chain": "polygon", "chain_id": 137, "max_block_lag": 3, "max_head_age": "2m",
            "references": [format!("{}/ref-a", evm.url()), format!("{}/ref-b", evm.url())],
            "nodes": [{ "name": "node-1", "url": format!("{}/node-1", evm.url()) }],
        }],
        "probes": [{ "name": "wallet-status", "url": format!("{}/wallet/api/v2/status.json", sp.url()), "budget_ms": 400 }],
    });
    let component = "statuspage:kctbh9vrtdwd:b13yz5g2cw10";
    let check = || run(&daemon, "provider-health", params.clone())["output"].clone();

    assert_eq!(check()["failing"], json!([]), "all healthy");
    // An answer slower than the probe's budget is a failure of its own kind.
    sp.delay("wallet", Duration::from_millis(600));
    let slow = check();
    assert_eq!(slow["failing"], json!(["probe:wallet-status"]), "{slow:#}");
    sp.delay("wallet", Duration::ZERO);
    sp.set_component("acme", "b13yz5g2cw10", "major_outage");
    evm.set_head("node-1", 20_999_900, head_at);
    // The providers' own 429s say nothing about them: unknown, counts stay.
    sp.respond_with("acme", 429, 1);
    evm.respond_with("node-1", 429, 1);
    let limited = check();
    assert_eq!(
        limited["unknown"],
        json!(["statuspage-fetch:acme", "rpc:polygon:node-1"]),
        "{limited:#}"
    );
    check();
    check();
    assert!(issues(&daemon, "").is_empty(), "two failures open nothing");
    let third = check();
    assert_eq!(
        third["opened"],
        json!([component, "rpc:polygon:node-1"]),
        "{third:#}"
    );
    let open = issues(&daemon, "");
    let outage = issue(&open, component).expect("component issue");
    assert_eq!(outage["severity"], "high");
    assert!(
        outage["link"]
            .as_str()
            .unwrap()
            .starts_with("https://stspg.io/"),
        "{outage:#}"
    );
    let node = issue(&open, "rpc:polygon:node-1").expect("node issue");
    assert_eq!(
        node["severity"], "high",
        "101 blocks behind, over 10× the limit"
    );
    assert!(
        node["details"]
            .as_str()
            .unwrap()
            .contains("101 blocks behind"),
        "{node:#}"
    );
    assert_eq!(
        check()["opened"],
        json!([]),
        "still failing: no second issue"
    );
    assert_eq!(
        issue(&issues(&daemon, ""), component).unwrap()["occurrences"],
        2
    );

    sp.set_component("acme", "b13yz5g2cw10", "operational");
    evm.set_head("node-1", 21_000_001, head_at);
    assert_eq!(
        check()["resolved"],
        json!([]),
        "one success is not recovery"
    );
    assert_eq!(
        check()["resolved"],
        json!([component, "rpc:polygon:node-1"])
    );
    assert!(issues(&daemon, "").is_empty());
}

#[test]
fn alert_remediation_acts_on_alertmanager_once_and_resolves() {
    let rt = runtime();
    let admin = rt.block_on(Recorder::start());
    let d = deploy(
        &["alert-remediation"],
        &[("https://rpc-admin.example.com", &admin.url())],
        "",
    );
    let token = "am-token-51c0-7a2e9d";
    let daemon = Daemon::start(
        &d,
        &[
            ("ALERTMANAGER_TOKEN", token),
            ("REMEDIATION_TOKEN", "rem-token-99"),
        ],
    );
    let fixtures = Path::new(REPO).join("tests/runbooks/fixtures/alertmanager");
    let body = |f: &str| std::fs::read_to_string(fixtures.join(f)).unwrap();
    let post = |body: String, bearer: &str| -> Reply {
        send(
            client()
                .post(format!("{}/hooks/alert-remediation", daemon.url))
                .header("Authorization", format!("Bearer {bearer}"))
                .header("Content-Type", "application/json")
                .body(body),
        )
    };
    let key = "alert:RPCNodeBehind:1a30ba71cca2921f";

    assert_eq!(
        post(body("rpc-node-behind-firing.json"), "wrong").status,
        401
    );
    let fired = post(body("rpc-node-behind-firing.json"), token);
    assert!(fired.status < 300, "{}", fired.text);
    daemon.wait_runs("the firing run", Duration::from_secs(20), |r| {
        r.len() == 1 && !matches!(r[0].status.as_str(), "queued" | "running")
    });
    let calls = admin.requests();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].method, "POST");
    assert_eq!(
        calls[0].path,
        "/pools/polygon/nodes/polygon-rpc-2:8545/drain"
    );
    assert_eq!(calls[0].headers["authorization"], "Bearer rem-token-99");
    let open = issues(&daemon, "");
    assert_eq!(issue(&open, key).expect("issue")["severity"], "critical");

    // Alertmanager repeats the notification: nothing new.
    let again = post(body("rpc-node-behind-firing.json"), token);
    assert_eq!(again.body["duplicate"], true, "{}", again.text);
    assert_eq!(admin.requests().len(), 1);

    let resolved = post(body("rpc-node-behind-resolved.json"), token);
    assert!(resolved.status < 300, "{}", resolved.text);
    daemon.wait_runs("the resolved run", Duration::from_secs(20), |r| {
        r.len() == 2
            && r.iter()
                .all(|r| !matches!(r.status.as_str(), "queued" | "running"))
    });
    let all = issues(&daemon, "status=all");
    assert_eq!(issue(&all, key).unwrap()["status"], "resolved");
    assert_eq!(admin.requests().len(), 1, "resolving calls nothing");

    let unknown = post(body("unknown-alert-firing.json"), token);
    assert!(unknown.status < 300);
    let runs = daemon.wait_runs("the unknown alert's run", Duration::from_secs(20), |r| {
        r.len() == 3
            && r.iter()
                .all(|r| !matches!(r.status.as_str(), "queued" | "running"))
    });
    assert!(runs.iter().all(|r| r.status.as_str() == "succeeded"));
    assert_eq!(admin.requests().len(), 1);
    assert_eq!(issues(&daemon, "").len(), 0);
}

#[test]
fn daily_digest_arrives_once_over_smtp_and_not_when_empty() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = common::smtp::serve(listener);
    let d = deploy(
        &["daily-digest"],
        &[],
        &format!(
            "smtp:\n  url: smtp://127.0.0.1:{port}\n  tls: none\n  from: runbookd@acme.example\n"
        ),
    );
    d.runbook(
        "raise.yaml",
        r#"
triggers: [manual]
params: { key: { type: string }, severity: { type: string } }
run: |
  issues::open(params.key, #{ title: `Problem ${params.key}`, severity: params.severity, link: "https://example.com/x" })
"#,
    );
    let daemon = Daemon::start(&d, &[]);
    let to = json!({ "to": ["ops-leads@acme.example"] });

    let empty = run(&daemon, "daily-digest", to.clone());
    assert_eq!(empty["output"]["reason"], "nothing to report");

    for (key, sev) in [
        ("db-disk", "critical"),
        ("cert-expiry", "medium"),
        ("slow-api", "medium"),
    ] {
        run(&daemon, "raise", json!({ "key": key, "severity": sev }));
    }
    let sent = run(&daemon, "daily-digest", to.clone());
    assert_eq!(sent["output"]["sent"], true, "{:#}", sent["output"]);
    let again = run(&daemon, "daily-digest", to);
    assert_eq!(again["output"]["reason"], "already sent today");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sink.0.lock().unwrap().received.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no email\n{}",
            daemon.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The mailer has no more to send: the outbox holds one email, sent.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = d.cli(&["emails", "--json"]);
        if r.code == 0 && r.stdout.contains("\"sent\"") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.stdout);
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = sink.0.lock().unwrap().received.clone();
    assert_eq!(got.len(), 1, "one digest: {got:#?}");
    let mail = &got[0];
    assert_eq!(mail.to, ["ops-leads@acme.example"]);
    assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);
    let unfolded = mail.data.replace("\r\n ", " ");
    assert!(
        unfolded.contains("3 unresolved (1 critical), 3 new, 0 resolved"),
        "{}",
        mail.data
    );
    let text = mail.data.replace("=\r\n", "");
    for needle in [
        "3 unresolved issues",
        "CRITICAL (1)",
        "MEDIUM (2)",
        "Problem db-disk",
    ] {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
}
