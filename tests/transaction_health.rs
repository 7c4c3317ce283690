//! The transaction-health runbook end to end: the real daemon runs the
//! shipped runbook against a fake Prometheus (recorded series, faults) and a
//! fake Zendesk on 127.0.0.1, with its tokens as secrets; its issues open
//! after three bad checks, resolve after two good ones, show in the daily
//! digest, and numbers Prometheus cannot give are unknown, never an alarm.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::daemon::Daemon;
use common::fakes::{Prometheus, Ticket, Zendesk};
use common::http::{client, send};
use common::shipped::{deploy, issue, issues, run, runtime};
use serde_json::{Value, json};

const APPROVAL: &str =
    r#"sum(rate(card_auth_total{outcome="approved"}[15m])) / sum(rate(card_auth_total[15m]))"#;
const DECLINES: &str = "sum by (code) (increase(card_auth_declines_total[15m]))";
const TIMEOUTS: &str = "sum(increase(card_jit_timeouts_total[15m]))";
const P95: &str =
    "histogram_quantile(0.95, sum by (le) (rate(card_jit_response_seconds_bucket[5m])))";
const P99: &str =
    "histogram_quantile(0.99, sum by (le) (rate(card_jit_response_seconds_bucket[5m])))";
const PROM_TOKEN: &str = "prom-token-5c1e";
const ZD_TOKEN: &str = "zd-token-77aa";

/// `value` at the same time of day on each of the 7 days before `now`.
fn baseline(
    prom: &Prometheus,
    expr: &str,
    labels: &[(&str, &str)],
    now: DateTime<Utc>,
    value: &str,
) {
    for d in 1..=7 {
        prom.set(expr, labels, now - TimeDelta::days(d), value);
    }
}

/// A calm week and a calm minute for every default query but the approval
/// rate, recorded at `at` and the same time on the 7 days before.
fn calm(prom: &Prometheus, at: DateTime<Utc>) {
    for (code, count) in [("05", "600"), ("51", "400"), ("91", "11"), ("96", "6")] {
        prom.set_daily(DECLINES, &[("code", code)], at, 7, count);
    }
    prom.set_daily(TIMEOUTS, &[], at, 7, "1");
    prom.set(P95, &[], at, "0.31");
    prom.set(P99, &[], at, "0.62");
}

/// The runbook enabled, without its schedule (the test says when checks
/// happen), with its tokens declared, as its page says to.
fn daemon(names: &[&str]) -> (common::Deployment, Daemon) {
    let d = deploy(
        names,
        &[
            ("  - every: 5m\n", ""),
            (
                "secrets: []\nhttp:\n  allow: [prometheus.example.com]",
                "secrets: [PROMETHEUS_TOKEN, ZENDESK_TOKEN]\nhttp:\n  allow: [prometheus.example.com]",
            ),
        ],
        "",
    );
    let daemon = Daemon::start(
        &d,
        &[
            ("PROMETHEUS_TOKEN", PROM_TOKEN),
            ("ZENDESK_TOKEN", ZD_TOKEN),
        ],
    );
    (d, daemon)
}

/// A manual run to its end, whatever its status.
fn run_any(daemon: &Daemon, params: &Value) -> Value {
    let r = send(
        client()
            .post(format!(
                "{}/api/v1/runbooks/transaction-health/runs?wait=true",
                daemon.url
            ))
            .json(&json!({ "params": params })),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text, daemon.text());
    r.body["run"].clone()
}

/// The digest text's block for one severity: the header, then four lines an issue.
fn section<'a>(text: &'a str, header: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == header);
    let at = at.unwrap_or_else(|| panic!("no {header:?} in the digest:\n{text}"));
    lines[at + 1..(at + 4).min(lines.len())].to_vec()
}

#[test]
fn an_approval_drop_opens_on_the_third_check_resolves_after_two_good_ones_and_shows_in_the_digest()
{
    let rt = runtime();
    let now = Utc::now();
    let prom = rt.block_on(Prometheus::start(now, Some(PROM_TOKEN)));
    // Samples a minute old: every run, a little later, sees them as current.
    let t0 = now - TimeDelta::seconds(60);
    calm(&prom, t0);
    baseline(&prom, APPROVAL, &[], t0, "0.9312");
    prom.set(APPROVAL, &[], t0, "0.8712");
    // Users write in about declines: 3 tickets this hour, 1 a week.
    let zd = rt.block_on(Zendesk::start(now, "bot@acme.example", ZD_TOKEN));
    for (id, ago) in [(201, 10), (202, 25), (203, 40), (150, 24 * 60 + 30)] {
        let mut t = Ticket::pending(id, "My card was declined", now).with_tags(&["card_declined"]);
        t.created_at = now - TimeDelta::minutes(ago);
        zd.add_ticket(t);
    }
    let (d, daemon) = daemon(&["transaction-health", "daily-digest"]);
    let params = json!({
        "prometheus_url": prom.url(),
        "prometheus_bearer_secret": "PROMETHEUS_TOKEN",
        "tickets_tag": "card_declined",
        "tickets_min_count": 2,
        "zendesk_url": zd.url(),
        "zendesk_email": "bot@acme.example",
    });
    let approval = "transaction-health:approval-rate";
    let tickets = "transaction-health:tickets:card_declined";
    let check = || run(&daemon, "transaction-health", params.clone())["output"].clone();

    for n in 1..=2 {
        let out = check();
        assert_eq!(
            out["failing"],
            json!([approval, tickets]),
            "check {n}: {out:#}"
        );
        assert_eq!(out["unknown"], json!([]), "{out:#}");
    }
    assert!(
        issues(&daemon, "").is_empty(),
        "two bad checks open nothing"
    );
    let third = check();
    assert_eq!(third["opened"], json!([approval, tickets]), "{third:#}");
    assert_eq!(third["values"][approval], 0.8712, "{third:#}");
    assert_eq!(third["values"][tickets], 3, "{third:#}");
    let open = issues(&daemon, "");
    assert_eq!(open.len(), 2, "{open:#?}");
    let graph = format!(
        "{}/graph?g0.expr=sum%28rate%28card_auth_total%7Boutcome%3D%22approved%22%7D%5B15m%5D%29%29%20%2F%20sum%28rate%28card_auth_total%5B15m%5D%29%29&g0.tab=0&g0.range_input=1d",
        prom.url()
    );
    let drop = issue(&open, approval).expect("the approval issue");
    assert_eq!(
        (
            &drop["title"],
            &drop["severity"],
            &drop["link"],
            &drop["runbook"],
            &drop["occurrences"]
        ),
        (
            &json!("Card approval rate 87.12%, 6 pp below its baseline of 93.12%"),
            &json!("critical"),
            &json!(graph),
            &json!("transaction-health"),
            &json!(1)
        ),
        "{drop:#}"
    );
    assert_eq!(
        drop["details"],
        format!(
            "The approval rate is 87.12% now against 93.12%, the mean at this time of day on the last 7 days: 6 pp lower (an issue opens above 0.5 pp; high from 2 pp, critical from 5 pp). Query: {APPROVAL}; failing for 3 checks in a row"
        )
    );
    let rising = issue(&open, tickets).expect("the tickets issue");
    assert_eq!(
        (&rising["title"], &rising["severity"], &rising["link"]),
        (
            &json!("Support tickets tagged card_declined rising: 3 in the last hour against 0.1"),
            &json!("high"),
            &json!(format!(
                "{}/agent/search/1?q=type%3Aticket%20tags%3Acard_declined",
                zd.url()
            )),
        ),
        "{rising:#}"
    );
    assert_eq!(
        rising["details"],
        "Users are writing in about declines: 3 new tickets tagged card_declined in the last hour, against a mean of 0.1 in the same hour of the last 7 days (rising is 3× and at least 2). Zendesk search: type:ticket tags:card_declined; failing for 3 checks in a row"
    );
    // Every query carried the token; each check asks 8 queries.
    let asked = prom.asked();
    assert_eq!(asked.len(), 3 * 8, "{asked:#?}");
    let bearer = format!("Bearer {PROM_TOKEN}");
    assert!(
        asked
            .iter()
            .all(|a| a.auth.as_deref() == Some(bearer.as_str())),
        "{asked:#?}"
    );

    // The digest lists them by severity, with their links.
    let sent = run(
        &daemon,
        "daily-digest",
        json!({ "to": ["ops@acme.example"] }),
    );
    assert_eq!(
        sent["output"]["counts"]["critical"], 1,
        "{:#}",
        sent["output"]
    );
    let emails: Value = serde_json::from_str(&d.cli(&["emails", "--json"]).stdout).unwrap();
    let text = emails[0]["text"].as_str().expect("a text part");
    for (header, title, link, key) in [
        (
            "CRITICAL (1)",
            drop["title"].as_str().unwrap(),
            graph.clone(),
            approval,
        ),
        (
            "HIGH (1)",
            rising["title"].as_str().unwrap(),
            rising["link"].as_str().unwrap().to_string(),
            tickets,
        ),
    ] {
        let block = section(text, header);
        assert_eq!(block[0], format!("- {title}"), "{text}");
        assert!(
            block[1].starts_with("  transaction-health · open ")
                && block[1].ends_with(&format!(" · seen 1× · {link}")),
            "{text}"
        );
        assert_eq!(block[2], format!("  {key}"), "{text}");
    }

    // Approvals recover; one good check is not recovery, two are.
    prom.set(APPROVAL, &[], Utc::now(), "0.9301");
    assert_eq!(check()["resolved"], json!([]), "one good check");
    let fifth = check();
    assert_eq!(fifth["resolved"], json!([approval]), "{fifth:#}");
    let all = issues(&daemon, "status=all");
    let resolved = issue(&all, approval).unwrap();
    assert_eq!(
        (&resolved["status"], &resolved["resolution"]),
        (
            &json!("resolved"),
            &json!("recovered: 93.01% against 93.12%")
        )
    );
    assert_eq!(
        issue(&all, tickets).unwrap()["status"],
        "open",
        "tickets still rising"
    );
}

#[test]
fn nan_empty_results_timeouts_and_429s_are_unknown_and_a_promql_typo_fails_with_the_servers_message()
 {
    let rt = runtime();
    let now = Utc::now();
    let prom = rt.block_on(Prometheus::start(now, None));
    // Samples in the past, each later one replacing the one before.
    let t = |secs: i64| now - TimeDelta::seconds(60 - secs);
    calm(&prom, t(0));
    baseline(&prom, APPROVAL, &[], t(0), "0.9312");
    prom.set(APPROVAL, &[], t(0), "0.8712");
    let (_d, daemon) = daemon(&["transaction-health"]);
    let params = json!({ "prometheus_url": prom.url() });
    let approval = "transaction-health:approval-rate";
    let check = || run(&daemon, "transaction-health", params.clone())["output"].clone();

    assert_eq!(check()["failing"], json!([approval]));
    // No traffic: the rate is NaN and no decline series exists; the timeouts
    // query times out, the p95 one is rate-limited, p99 is +Inf.
    prom.set(APPROVAL, &[], t(10), "NaN");
    let declines = "sum by (code) (increase(card_auth_declines_total[5m]))";
    prom.fail(
        TIMEOUTS,
        503,
        "timeout",
        "query timed out in expression evaluation",
        1,
    );
    prom.fail(P95, 429, "", "", 1);
    prom.set(P99, &[], t(10), "+Inf");
    let mut quiet = params.clone();
    quiet["declines_query"] = json!(declines);
    let out = run(&daemon, "transaction-health", quiet)["output"].clone();
    assert_eq!(
        (
            &out["failing"],
            &out["opened"],
            &out["resolved"],
            &out["values"]
        ),
        (&json!([]), &json!([]), &json!([]), &json!({})),
        "{out:#}"
    );
    assert_eq!(
        out["unknown"],
        json!([
            approval,
            "transaction-health:decline:05",
            "transaction-health:decline:51",
            "transaction-health:decline:91",
            "transaction-health:decline:96",
            "transaction-health:timeouts",
            "transaction-health:latency:p95",
            "transaction-health:latency:p99",
        ]),
        "{out:#}"
    );
    // The unknown check kept the count: two more bad checks make three.
    prom.set(APPROVAL, &[], t(20), "0.8712");
    assert_eq!(check()["opened"], json!([]));
    assert_eq!(
        check()["opened"],
        json!([approval]),
        "the third bad check opens it"
    );

    // A typo in a query and a query Prometheus cannot execute fail the run,
    // with Prometheus's own messages; the other checks were still decided.
    let typo =
        r#"sum(rate(card_auth_total{outcome="approved"}[15m]) / sum(rate(card_auth_total[15m]))"#;
    prom.fail(
        P99,
        422,
        "execution",
        "query processing would load too many samples into memory in query execution",
        1,
    );
    let mut bad = params.clone();
    bad["approval_rate_query"] = json!(typo);
    let failed = run_any(&daemon, &bad);
    assert_eq!(failed["status"], "failed", "{failed:#}");
    assert_eq!(
        failed["error"],
        format!(
            "step decide: fix the query params: approval_rate_query: Prometheus answered 400: bad_data: invalid parameter \"query\": 1:{}: parse error: unclosed left parenthesis; latency p99 query: Prometheus answered 422: execution: query processing would load too many samples into memory in query execution",
            typo.len() + 1
        )
    );
    let open = issues(&daemon, "");
    assert_eq!(open.len(), 1, "nothing new opened or resolved: {open:#?}");
    assert_eq!(issue(&open, approval).unwrap()["occurrences"], 1);
}
