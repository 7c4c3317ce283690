//! A fake of the Zendesk Support API v2 (providers.md §1.1): Basic
//! `email/token:` or Bearer auth, `GET /api/v2/search.json` (offset paging,
//! the 1,000-result cap, a query subset), `GET /api/v2/search/count.json`,
//! `GET`/`PUT /api/v2/tickets/{id}.json` with the `ticket` + `audit` reply.
//!
//! Search reads an index snapshot that is refreshed after every write unless
//! `set_search_lag(true)`, so a test can show a runbook re-reads each ticket.
//! Faults: `rate_limit_writes` (429 with a text body) and `fail_next_search`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Value, json};

use super::{bind, json, reason, secs, spawn};

mod export;

const STATUSES: [&str; 6] = ["new", "open", "pending", "hold", "solved", "closed"];
const RESULT_CAP: usize = 1000;
const AGENT_ID: u64 = 900_000_000_001;
const SEARCH_UNAVAILABLE: &str =
    "Sorry, we could not complete your search query. Please try again in a moment.";
const RESULT_CAP_TEXT: &str =
    "Search results are limited to 1000 per query. Narrow your search or use the export endpoint.";
const WRITE_LIMIT_TEXT: &str =
    "Rate limit for ticket updates exceeded, please wait before updating this ticket again";

/// A ticket as the fake keeps it; the JSON adds the fields Zendesk always sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: u64,
    pub subject: String,
    pub status: String,
    pub priority: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub requester_id: u64,
    pub tags: Vec<String>,
    /// Comments added through the API: (body, public).
    pub comments: Vec<(String, bool)>,
}

impl Ticket {
    /// A pending, normal-priority ticket created two days before `updated_at`.
    pub fn pending(id: u64, subject: &str, updated_at: DateTime<Utc>) -> Self {
        Ticket {
            id,
            subject: subject.to_string(),
            status: "pending".to_string(),
            priority: "normal".to_string(),
            created_at: updated_at - Duration::days(2),
            updated_at,
            requester_id: 20_000_000 + id,
            tags: Vec::new(),
            comments: Vec::new(),
        }
    }

    pub fn with_tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }
}

/// One applied `PUT /api/v2/tickets/{id}.json`: the request body as sent and
/// the fake's "now" when it arrived. Rejected writes appear only in `requests()`.
#[derive(Debug, Clone)]
pub struct Write {
    pub ticket_id: u64,
    pub body: Value,
    pub at: DateTime<Utc>,
}

struct WriteLimit {
    /// Limit once this many writes have been applied in total.
    after_total: usize,
    retry_after: u64,
    times_left: usize,
}

#[derive(Default)]
struct Inner {
    now: DateTime<Utc>,
    email: String,
    token: String,
    tickets: BTreeMap<u64, Ticket>,
    index: Vec<Ticket>,
    search_lag: bool,
    writes: Vec<Write>,
    requests: Vec<String>,
    write_limit: Option<WriteLimit>,
    fail_next_search: Option<u16>,
    last_stamp: Option<DateTime<Utc>>,
    next_id: u64,
}

impl Inner {
    fn touched(&mut self) {
        if !self.search_lag {
            self.index = self.tickets.values().cloned().collect();
        }
    }

    /// `updated_at` for an API write: now, and one second later than the last.
    fn stamp(&mut self) -> DateTime<Utc> {
        let t = self.last_stamp.map_or(self.now, |l| l.max(self.now)) + Duration::seconds(1);
        self.last_stamp = Some(t);
        t
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Handle on a running fake Zendesk; clones share its state.
#[derive(Clone)]
pub struct Zendesk {
    url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Zendesk {
    pub async fn start(now: DateTime<Utc>, email: &str, api_token: &str) -> Zendesk {
        let (listener, url) = bind().await;
        let z = Zendesk {
            url,
            inner: Arc::new(Mutex::new(Inner {
                now,
                email: email.to_string(),
                token: api_token.to_string(),
                next_id: 2_127_301_000,
                ..Inner::default()
            })),
        };
        let app = Router::new()
            .route("/api/v2/search.json", get(search))
            .route("/api/v2/search/count.json", get(count))
            .route("/api/v2/search/export.json", get(export::export))
            .route("/api/v2/tickets/{file}", get(show).put(update))
            .layer(axum::middleware::from_fn_with_state(z.clone(), guard))
            .with_state(z.clone());
        spawn(listener, app);
        z
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn set_now(&self, now: DateTime<Utc>) {
        self.lock().now = now;
    }

    /// Add or replace a ticket (its tags sorted, as Zendesk keeps them).
    pub fn add_ticket(&self, mut ticket: Ticket) {
        ticket.tags.sort();
        ticket.tags.dedup();
        let mut s = self.lock();
        s.tickets.insert(ticket.id, ticket);
        s.touched();
    }

    /// Change a live ticket's status (as an agent would); `updated_at` becomes now.
    pub fn set_status(&self, id: u64, status: &str) {
        let mut s = self.lock();
        let now = s.now;
        let t = s.tickets.get_mut(&id).expect("the ticket exists");
        t.status = status.to_string();
        t.updated_at = now;
        s.touched();
    }

    /// With lag on, search keeps answering from the last index snapshot;
    /// turning it off refreshes the index at once.
    pub fn set_search_lag(&self, on: bool) {
        let mut s = self.lock();
        s.search_lag = on;
        s.touched();
    }

    /// Refresh the search index from the live tickets now.
    pub fn reindex(&self) {
        let mut s = self.lock();
        s.index = s.tickets.values().cloned().collect();
    }

    /// Once `after` more writes have been applied, answer the next `times`
    /// PUTs with 429 and `Retry-After: retry_after_secs`; then accept again.
    pub fn rate_limit_writes(&self, after: usize, retry_after_secs: u64, times: usize) {
        let mut s = self.lock();
        let after_total = s.writes.len() + after;
        s.write_limit = Some(WriteLimit {
            after_total,
            retry_after: retry_after_secs,
            times_left: times,
        });
    }

    /// Fail the next search request (search.json or count.json) with `status`:
    /// 503 has Zendesk's `unavailable` JSON body, 429 the text rate-limit reply.
    pub fn fail_next_search(&self, status: u16) {
        self.lock().fail_next_search = Some(status);
    }

    /// The live ticket, with the comments added through the API.
    pub fn ticket(&self, id: u64) -> Option<Ticket> {
        self.lock().tickets.get(&id).cloned()
    }

    pub fn writes(&self) -> Vec<Write> {
        self.lock().writes.clone()
    }

    /// Every request line in arrival order, e.g. `GET /api/v2/search.json?query=…`
    /// (the query string as it arrived, still URL-encoded).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }
}

/// Record the request, check the credentials, add the rate-limit headers.
async fn guard(State(z): State<Zendesk>, req: Request, next: Next) -> Response {
    let ok = {
        let mut s = z.lock();
        let line = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        s.requests.push(format!("{} {line}", req.method()));
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}/token:{}", s.email, s.token));
        let auth = req.headers().get("authorization").map(|v| v.as_bytes());
        auth == Some(format!("Basic {basic}").as_bytes())
            || auth == Some(format!("Bearer {}", s.token).as_bytes())
    };
    if !ok {
        return json(401, json!({"error": "Couldn't authenticate you"}));
    }
    let mut resp = next.run(req).await;
    if resp.status() != 429 {
        for (name, value) in [
            ("x-rate-limit", "700"),
            ("x-rate-limit-remaining", "699"),
            ("ratelimit-limit", "700"),
            ("ratelimit-remaining", "699"),
            ("ratelimit-reset", "41"),
        ] {
            resp.headers_mut().insert(name, value.parse().unwrap());
        }
    }
    resp
}

/// Zendesk's 429: a text body, not JSON.
fn rate_limited(retry_after: u64, text: &'static str) -> Response {
    let headers = [
        ("content-type", "text/plain".to_string()),
        ("retry-after", retry_after.to_string()),
        ("x-rate-limit", "700".to_string()),
        ("x-rate-limit-remaining", "0".to_string()),
    ];
    (axum::http::StatusCode::TOO_MANY_REQUESTS, headers, text).into_response()
}

fn error(status: u16, error: &str, description: &str) -> Response {
    json(status, json!({"error": error, "description": description}))
}

fn search_failure(status: u16) -> Response {
    match status {
        429 => rate_limited(1, "Rate limit exceeded, please wait before searching again"),
        503 => error(503, "unavailable", SEARCH_UNAVAILABLE),
        _ => error(status, reason(status), reason(status)),
    }
}

type Check = Box<dyn Fn(&Ticket) -> bool + Send>;

/// Search filter: `status:` terms match any of them, `tags:` terms any of
/// them, and every other term must hold.
#[derive(Default)]
struct Filter {
    statuses: Vec<String>,
    tags: Vec<String>,
    checks: Vec<Check>,
}

impl Filter {
    fn matches(&self, t: &Ticket) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&t.status))
            && (self.tags.is_empty() || self.tags.iter().any(|x| t.tags.contains(x)))
            && self.checks.iter().all(|check| check(t))
    }
}

fn rank(status: &str) -> Result<usize, String> {
    let found = STATUSES.iter().position(|s| *s == status);
    found.ok_or_else(|| format!("unknown status `{status}`"))
}

/// `72hours`, `3days`, `1week`, `2025-01-05` or `2025-01-05T12:00:00Z`.
fn cutoff(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap().and_utc());
    }
    let digits = value.chars().take_while(char::is_ascii_digit).count();
    let unit = match value[digits..].trim_end_matches('s') {
        "minute" => Duration::minutes(1),
        "hour" => Duration::hours(1),
        "day" => Duration::days(1),
        "week" => Duration::weeks(1),
        _ => return Err(format!("bad date `{value}`")),
    };
    let n: i32 = value[..digits]
        .parse()
        .map_err(|_| format!("bad date `{value}`"))?;
    let past = unit.checked_mul(n).and_then(|d| now.checked_sub_signed(d));
    past.ok_or_else(|| format!("bad date `{value}`"))
}

fn parse_query(query: &str, now: DateTime<Utc>) -> Result<Filter, String> {
    let mut f = Filter::default();
    for word in query.split_whitespace() {
        let (negated, term) = match word.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, word),
        };
        let Some(at) = term.find([':', '<', '>']) else {
            continue; // free text is ignored
        };
        let (key, op, value) = (&term[..at], &term[at..=at], &term[at + 1..]);
        match (negated, key, op) {
            (false, "type", ":") if value == "ticket" => {}
            (false, "status", ":") => {
                rank(value)?;
                f.statuses.push(value.to_string());
            }
            (false, "status", _) => {
                let (limit, below) = (rank(value)?, op == "<");
                f.checks.push(Box::new(move |t| {
                    let r = rank(&t.status).unwrap_or(0);
                    if below { r < limit } else { r > limit }
                }));
            }
            (false, "updated" | "created", "<" | ">") => {
                let (at, before, updated) = (cutoff(value, now)?, op == "<", key == "updated");
                f.checks.push(Box::new(move |t| {
                    let v = if updated { t.updated_at } else { t.created_at };
                    if before { v < at } else { v > at }
                }));
            }
            (false, "tags" | "tag", ":") => f.tags.push(value.to_string()),
            (true, "tags" | "tag", ":") => {
                let tag = value.to_string();
                f.checks.push(Box::new(move |t| !t.tags.contains(&tag)));
            }
            _ => return Err(format!("unsupported search term `{word}`")),
        }
    }
    Ok(f)
}

type Params = HashMap<String, String>;

/// The query parameters, and the tickets in the index that match `query`.
fn find(s: &mut Inner, raw: Option<String>) -> Result<(Params, Vec<Ticket>), Box<Response>> {
    if let Some(status) = s.fail_next_search.take() {
        return Err(Box::new(search_failure(status)));
    }
    let raw = raw.unwrap_or_default();
    let params: Params = form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let Some(query) = params.get("query") else {
        return Err(Box::new(error(400, "invalid query", "query is required")));
    };
    let filter =
        parse_query(query, s.now).map_err(|d| Box::new(error(400, "invalid query", &d)))?;
    let found = s.index.iter().filter(|t| filter.matches(t));
    Ok((params, found.cloned().collect()))
}

async fn search(State(z): State<Zendesk>, RawQuery(raw): RawQuery) -> Response {
    let (params, mut found) = match find(&mut z.lock(), raw) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    if params.keys().any(|k| k.starts_with("page[")) {
        // Cursor paging belongs to export.json; search.json refuses it.
        return json(
            400,
            json!({"error": {"title": "Invalid attribute", "message": "You passed an invalid value for the page[size] attribute. Cursor pagination is not supported for this endpoint"}}),
        );
    }
    let number = |key: &str, default: usize| match params.get(key) {
        Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1),
        None => Some(default),
    };
    let (Some(page), Some(per_page @ 1..=100)) = (number("page", 1), number("per_page", 100))
    else {
        return error(400, "invalid", "page must be 1 or more, per_page 1 to 100");
    };
    found.sort_by_key(|t| (t.updated_at, t.id));
    let sort_by = params.get("sort_by").map_or("updated_at", String::as_str);
    let sort_order = params.get("sort_order").map_or("desc", String::as_str);
    match (sort_by, sort_order) {
        ("updated_at", "asc") => {}
        ("updated_at", "desc") => found.reverse(),
        _ => return error(400, "invalid", "the fake sorts by updated_at, asc or desc"),
    }
    let start = (page - 1) * per_page;
    if start >= RESULT_CAP {
        return error(422, "invalid", RESULT_CAP_TEXT);
    }
    let limit = found.len().min(RESULT_CAP);
    let end = (start + per_page).min(limit);
    let results: Vec<Value> = found[start.min(end)..end]
        .iter()
        .map(|t| ticket_json(&z.url, t, true))
        .collect();
    let link = |n: usize, exists: bool| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("page", &n.to_string());
        q.append_pair("per_page", &per_page.to_string());
        for key in ["query", "sort_by", "sort_order"] {
            if let Some(v) = params.get(key) {
                q.append_pair(key, v);
            }
        }
        let url = format!("{}/api/v2/search.json?{}", z.url, q.finish());
        if exists { json!(url) } else { Value::Null }
    };
    let next_page = link(page + 1, start + per_page < limit);
    let previous_page = link(page.saturating_sub(1), page > 1);
    let body = json!({"results": results, "facets": null, "next_page": next_page,
        "previous_page": previous_page, "count": found.len()});
    json(200, body)
}

async fn count(State(z): State<Zendesk>, RawQuery(raw): RawQuery) -> Response {
    match find(&mut z.lock(), raw) {
        Ok((_, found)) => json(200, json!({"count": found.len()})),
        Err(resp) => *resp,
    }
}

/// A ticket as Zendesk sends it (search results add `result_type`).
fn ticket_json(url: &str, t: &Ticket, search_result: bool) -> Value {
    let mut v = json!({
        "url": format!("{url}/api/v2/tickets/{}.json", t.id), "id": t.id, "external_id": null,
        "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": null}},
        "created_at": secs(t.created_at), "updated_at": secs(t.updated_at), "type": null,
        "subject": t.subject, "raw_subject": t.subject, "description": t.subject,
        "priority": t.priority, "status": t.status, "recipient": null,
        "requester_id": t.requester_id, "submitter_id": t.requester_id,
        "assignee_id": 235323, "organization_id": null, "group_id": 98738,
        "collaborator_ids": [], "follower_ids": [], "email_cc_ids": [], "problem_id": null,
        "has_incidents": false, "is_public": true, "due_at": null, "tags": t.tags,
        "custom_fields": [], "satisfaction_rating": null, "sharing_agreement_ids": [],
        "allow_channelback": false, "allow_attachments": true, "from_messaging_channel": false
    });
    if search_result {
        v["result_type"] = json!("ticket");
    }
    v
}

fn ticket_id(file: &str) -> Option<u64> {
    file.strip_suffix(".json")?.parse().ok()
}

async fn show(State(z): State<Zendesk>, Path(file): Path<String>) -> Response {
    let s = z.lock();
    match ticket_id(&file).and_then(|id| s.tickets.get(&id)) {
        Some(t) => json(200, json!({"ticket": ticket_json(&z.url, t, false)})),
        None => error(404, "RecordNotFound", "Not found"),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    let items = v.and_then(Value::as_array).into_iter().flatten();
    items
        .filter_map(|x| Some(x.as_str()?.to_string()))
        .collect()
}

async fn update(State(z): State<Zendesk>, Path(file): Path<String>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(change) = body.get("ticket").and_then(Value::as_object).cloned() else {
        return error(400, "InvalidJSON", "expected a `ticket` object");
    };
    let mut s = z.lock();
    let applied = s.writes.len();
    if let Some(limit) = s.write_limit.as_mut()
        && applied >= limit.after_total
        && limit.times_left > 0
    {
        limit.times_left -= 1;
        return rate_limited(limit.retry_after, WRITE_LIMIT_TEXT);
    }
    let Some(old) = ticket_id(&file).and_then(|id| s.tickets.get(&id)).cloned() else {
        return error(404, "RecordNotFound", "Not found");
    };
    let status = change.get("status").and_then(Value::as_str);
    let invalid = match status {
        _ if old.status == "closed" => Some("Status: closed prevents ticket update".to_string()),
        Some(st) if rank(st).is_err() => Some(format!("Status: {st} is not valid")),
        _ => None,
    };
    if let Some(description) = invalid {
        let body = json!({"error": "RecordInvalid", "description": "Record validation errors",
            "details": {"status": [{"description": description}]}});
        return json(422, body);
    }

    let mut t = old.clone();
    t.status = status.unwrap_or(&old.status).to_string();
    if change.contains_key("tags") {
        t.tags = strings(change.get("tags"));
    }
    t.tags.extend(strings(change.get("additional_tags")));
    let remove = strings(change.get("remove_tags"));
    t.tags.retain(|x| !remove.contains(x));
    t.tags.sort();
    t.tags.dedup();
    t.updated_at = s.stamp();

    let audit_id = s.id();
    let mut events = Vec::new();
    if let Some(c) = change.get("comment") {
        let text = c.get("body").and_then(Value::as_str).unwrap_or_default();
        let public = c.get("public").and_then(Value::as_bool).unwrap_or(true);
        t.comments.push((text.to_string(), public));
        events.push(
            json!({"id": s.id(), "type": "Comment", "author_id": AGENT_ID, "body": text,
            "public": public, "attachments": [], "audit_id": audit_id}),
        );
    }
    for (field, new, old) in [
        ("status", json!(t.status), json!(old.status)),
        ("tags", json!(t.tags), json!(old.tags)),
    ] {
        if new != old {
            events.push(json!({"id": s.id(), "type": "Change", "field_name": field,
                "value": new, "previous_value": old}));
        }
    }
    let at = s.now;
    let write = Write {
        ticket_id: t.id,
        body,
        at,
    };
    s.writes.push(write);
    s.tickets.insert(t.id, t.clone());
    s.touched();
    let audit = json!({
        "id": audit_id, "ticket_id": t.id, "created_at": secs(t.updated_at), "author_id": AGENT_ID,
        "metadata": {"system": {"client": "runbookd", "ip_address": "127.0.0.1"}, "custom": {}},
        "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": null}},
        "events": events
    });
    let ticket = ticket_json(&z.url, &t, false);
    json(200, json!({"ticket": ticket, "audit": audit}))
}
