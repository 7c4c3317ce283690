//! The shipped Zendesk library (`scripts/zendesk.rhai`), as stale-tickets
//! finds tickets with it, against the fake Zendesk: past search's 1,000-result
//! cap it reads the cursor-paginated export endpoint, so a bulk update that
//! gave 1,100 tickets one `updated_at` is read whole, each ticket once.

mod common;

use std::path::Path;

use chrono::{TimeDelta, TimeZone, Utc};
use common::Deployment;
use common::fakes::{Ticket, Zendesk};

/// The `find` step of runbooks/stale-tickets.yaml, returning what it found.
const FIND: &str = r#"triggers: [manual]
secrets: [ZENDESK_TOKEN]
params:
  zendesk_url: { type: string, default: "" }
run: |
  import "zendesk" as zd;
  let zendesk = #{ base: params.zendesk_url, email: "bot@acme.example", token: secret("ZENDESK_TOKEN") };
  let found = zd::search(zendesk, "type:ticket status:pending updated<72hours -tags:runbookd_no_autofollow");
  let ids = #{};
  for t in found { ids[`${t.id}`] = true; }
  #{ found: found.len(), distinct: ids.len(), first: found[0].id, last: found[found.len() - 1].id }
"#;

#[test]
fn eleven_hundred_tickets_updated_in_one_second_are_read_through_the_export_cursor() {
    common::init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let now = Utc.with_ymd_and_hms(2025, 1, 8, 12, 0, 0).unwrap();
    let zd = rt.block_on(Zendesk::start(now, "bot@acme.example", "zd-token-7f3e"));
    let bulk = now - TimeDelta::days(4);
    for id in 1..=1100 {
        zd.add_ticket(Ticket::pending(id, &format!("Ticket {id}"), bulk));
    }
    zd.add_ticket(Ticket::pending(5000, "Fresh", now - TimeDelta::hours(1)));

    let d = Deployment::new();
    d.runbook("find.yaml", FIND);
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/zendesk.rhai");
    std::fs::copy(scripts, d.scripts().join("zendesk.rhai")).unwrap();
    std::fs::write(
        d.path().join("runbookd.yaml"),
        "http:\n  allow: [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let url = format!("zendesk_url={}", zd.url());
    let ran = d.cli_env(
        &["run", "find", "-p", &url, "--json"],
        &[("ZENDESK_TOKEN", "zd-token-7f3e")],
    );
    let out: serde_json::Value = serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|_| panic!("{}\n{}", ran.stdout, ran.stderr));
    assert_eq!(
        (
            &out["run"]["status"],
            &out["run"]["error"],
            &out["run"]["output"]
        ),
        (
            &serde_json::json!("succeeded"),
            &serde_json::Value::Null,
            &serde_json::json!({"found": 1100, "distinct": 1100, "first": 1, "last": 1100})
        )
    );
    // One search page tells the count; two export pages read every ticket.
    let calls: Vec<(String, Vec<String>)> = zd
        .requests()
        .iter()
        .map(|line| {
            let (path, query) = line.split_once('?').unwrap_or((line, ""));
            let keys = form_urlencoded::parse(query.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect();
            (path.to_string(), keys)
        })
        .collect();
    let call = |path: &str, keys: &[&str]| {
        (
            path.to_string(),
            keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        calls,
        [
            call(
                "GET /api/v2/search.json",
                &["page", "per_page", "query", "sort_by", "sort_order"]
            ),
            call(
                "GET /api/v2/search/export.json",
                &["filter[type]", "page[size]", "query"]
            ),
            call(
                "GET /api/v2/search/export.json",
                &["filter[type]", "page[after]", "page[size]", "query"]
            ),
        ]
    );
}
