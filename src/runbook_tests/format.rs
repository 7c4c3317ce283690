//! The runbook test file, as its author writes it (see docs/testing.md).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One file: tests of one runbook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    pub runbook: String,
    /// Hosts these cases may call besides the runbook's `http.allow`: the
    /// hosts of params the cases set.
    #[serde(default)]
    pub allow: Vec<String>,
    /// The zone `format()` and schedules use (default: the deployment's
    /// `timezone`), so results do not depend on where the tests run.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Secret values for every case (never real ones: these are test values).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Replies every case shares, tried after the case's own.
    #[serde(default)]
    pub http: Vec<Fixture>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// The fixed clock: what `now()` returns for the whole run.
    pub now: String,
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    #[serde(default)]
    pub trigger: Option<TriggerInput>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// The runbook's `state` before the run.
    #[serde(default)]
    pub state: serde_json::Map<String, Value>,
    /// Issues that exist before the run.
    #[serde(default)]
    pub issues: Vec<SeedIssue>,
    /// A directory (relative to the test file) standing in for `data/`.
    #[serde(default)]
    pub data: Option<String>,
    /// Run as `runbookd run --dry-run` would: reads happen, writes are planned.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub http: Vec<Fixture>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    /// `manual` (default), `cron`, `every` or `webhook`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The slot of a scheduled run; default: `now`.
    #[serde(default)]
    pub scheduled_at: Option<String>,
    /// A webhook's JSON body, inline or from a file beside the test.
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub body_file: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Default: 1 (the daemon gives the delivery's number).
    #[serde(default)]
    pub delivery_id: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedIssue {
    pub key: String,
    pub title: String,
    #[serde(default = "medium")]
    pub severity: String,
    /// `open` (default), `acknowledged` or `resolved`.
    #[serde(default)]
    pub status: Option<String>,
    /// Default: the runbook under test.
    #[serde(default)]
    pub runbook: Option<String>,
    /// When it was first seen; default: `now`.
    #[serde(default)]
    pub first_seen: Option<String>,
    /// When it last changed; default: `first_seen`.
    #[serde(default)]
    pub last_seen: Option<String>,
    #[serde(default)]
    pub occurrences: Option<u32>,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
}

fn medium() -> String {
    "medium".into()
}

/// A recorded reply and the requests it answers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default = "get")]
    pub method: String,
    /// Scheme, host and path; the query is matched by `query`.
    pub url: String,
    /// Query parameters the request must have (others may be present).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Part of the JSON body the request must have.
    #[serde(default)]
    pub body: Option<Value>,
    /// One reply, or `replies` given in turn (the last one repeats).
    #[serde(default)]
    pub reply: Option<Reply>,
    #[serde(default)]
    pub replies: Vec<Reply>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub json: Option<Value>,
    #[serde(default)]
    pub body: Option<String>,
    /// A file beside the test holding the body (JSON files give `json` too).
    #[serde(default)]
    pub file: Option<String>,
    /// No answer at all: the call fails with this cause (connection
    /// refused, timed out...), as a live call to a dead host would.
    #[serde(default)]
    pub error: Option<String>,
}

fn ok() -> u16 {
    200
}

/// What must hold after the run. Everything is optional; maps and lists
/// compare only what they name (see docs/testing.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The run's status; `filtered` when a webhook's `when:` lets the
    /// delivery through to no run. Default: `succeeded`.
    #[serde(default)]
    pub status: Option<String>,
    /// The key a webhook's `dedup:` gives the delivery.
    #[serde(default)]
    pub dedup: Option<String>,
    /// Text the run's error contains.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub output: Option<Value>,
    /// Every HTTP call, in order: "METHOD URL" or a map with method, url,
    /// query and body.
    #[serde(default)]
    pub http: Option<Vec<Value>>,
    /// Every email queued, in order.
    #[serde(default)]
    pub emails: Option<Vec<Value>>,
    /// Every issue after the run, by key.
    #[serde(default)]
    pub issues: Option<Vec<Value>>,
    #[serde(default)]
    pub state: Option<serde_json::Map<String, Value>>,
    /// Text that some log line contains.
    #[serde(default)]
    pub logs: Vec<String>,
}
