//! A fake Prometheus HTTP query API (`/api/v1/query` and
//! `/api/v1/query_range`, GET or form POST) answering from recorded series,
//! in the real envelope and result types (`/work/shared/providers.md` §9).
//!
//! Series are recorded per PromQL expression, compared as exact text: the
//! fake does not evaluate PromQL, it replays what a real server would have
//! computed for that expression. A lookup at time `t` takes each series'
//! latest sample in (`t` - 5 minutes, `t`], as Prometheus's lookback does;
//! an expression with no sample there gives `result: []`. Sample values are
//! strings, so `"NaN"` and `"+Inf"` are recorded as they are served.
//!
//! Faults: an expression with unbalanced parentheses is a 400 `bad_data`
//! with Prometheus's parser message; `fail` makes the next requests for an
//! expression answer 422 `execution`, 503 `timeout`, or a proxy's 429.
//! With a bearer token set, other requests get a proxy's 401.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::{bind, json, spawn};

/// One request as the fake understood it.
#[derive(Debug, Clone)]
pub struct Asked {
    /// `query` or `query_range`.
    pub endpoint: String,
    pub expr: String,
    /// The `Authorization` header, when there was one.
    pub auth: Option<String>,
}

/// Labels and samples (unix seconds → value as Prometheus writes it).
#[derive(Default, Clone)]
struct Series {
    labels: BTreeMap<String, String>,
    samples: BTreeMap<i64, String>,
}

#[derive(Default)]
struct Inner {
    series: HashMap<String, Vec<Series>>,
    /// Per expression, the answers still to give instead of the data: (status, errorType, error).
    faults: HashMap<String, Vec<(u16, String, String)>>,
    bearer: Option<String>,
    /// The evaluation time of an instant query that gives none.
    now: i64,
    asked: Vec<Asked>,
}

/// Handle on a running fake; clones share its state.
#[derive(Clone)]
pub struct Prometheus {
    url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Prometheus {
    /// Start the fake, evaluating at `now` the instant queries that give no
    /// `time`; with `bearer`, only requests carrying that token are answered.
    pub async fn start(now: DateTime<Utc>, bearer: Option<&str>) -> Prometheus {
        let (listener, url) = bind().await;
        let p = Prometheus {
            url,
            inner: Arc::default(),
        };
        {
            let mut s = p.inner.lock().unwrap();
            s.bearer = bearer.map(str::to_string);
            s.now = now.timestamp();
        }
        let app = Router::new()
            .route("/api/v1/{endpoint}", get(answer).post(answer))
            .with_state(p.clone());
        spawn(listener, app);
        p
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Record `value` for the series of `expr` with `labels`, at `at`.
    pub fn set(&self, expr: &str, labels: &[(&str, &str)], at: DateTime<Utc>, value: &str) {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut s = self.inner.lock().unwrap();
        let all = s.series.entry(expr.to_string()).or_default();
        let i = match all.iter().position(|x| x.labels == labels) {
            Some(i) => i,
            None => {
                all.push(Series {
                    labels,
                    ..Series::default()
                });
                all.len() - 1
            }
        };
        all[i].samples.insert(at.timestamp(), value.to_string());
    }

    /// Record `value` at `at` and at the same time on each of the `days` days before.
    pub fn set_daily(
        &self,
        expr: &str,
        labels: &[(&str, &str)],
        at: DateTime<Utc>,
        days: i64,
        value: &str,
    ) {
        for d in 0..=days {
            self.set(expr, labels, at - TimeDelta::days(d), value);
        }
    }

    /// Answer the next `times` requests for `expr` with `status`: 429 as a
    /// proxy would (text, Retry-After), anything else in Prometheus's error envelope.
    pub fn fail(&self, expr: &str, status: u16, error_type: &str, error: &str, times: usize) {
        let mut s = self.inner.lock().unwrap();
        let queue = s.faults.entry(expr.to_string()).or_default();
        for _ in 0..times {
            queue.push((status, error_type.to_string(), error.to_string()));
        }
    }

    /// Every request so far, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.inner.lock().unwrap().asked.clone()
    }
}

fn error(status: u16, error_type: &str, message: &str) -> Response {
    json(
        status,
        json!({"status": "error", "errorType": error_type, "error": message}),
    )
}

async fn answer(
    State(p): State<Prometheus>,
    Path(endpoint): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let mut params: HashMap<String, String> =
        form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if method == Method::POST {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let expr = params.get("query").cloned().unwrap_or_default();
    let mut s = p.inner.lock().unwrap();
    s.asked.push(Asked {
        endpoint: endpoint.clone(),
        expr: expr.clone(),
        auth: auth.clone(),
    });
    if let Some(token) = &s.bearer
        && auth.as_deref() != Some(&format!("Bearer {token}"))
    {
        return (axum::http::StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    }
    if let Some(message) = parse_error(&expr) {
        return error(
            400,
            "bad_data",
            &format!("invalid parameter \"query\": {message}"),
        );
    }
    if let Some(queue) = s.faults.get_mut(&expr)
        && !queue.is_empty()
    {
        let (status, kind, message) = queue.remove(0);
        if status == 429 {
            let headers = [("Retry-After", "30")];
            return (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                headers,
                "Too Many Requests\n",
            )
                .into_response();
        }
        return error(status, &kind, &message);
    }
    let series = s.series.get(&expr).cloned().unwrap_or_default();
    let now = s.now;
    drop(s);
    match endpoint.as_str() {
        "query" => instant(&params, now, &series),
        "query_range" => range(&params, &series),
        _ => error(404, "not_found", &format!("unknown endpoint {endpoint}")),
    }
}

/// Prometheus's message for a query whose parentheses do not balance.
fn parse_error(expr: &str) -> Option<String> {
    if expr.is_empty() {
        return Some("1:1: parse error: no expression found in input".into());
    }
    let mut open = Vec::new();
    for (i, c) in expr.chars().enumerate() {
        match c {
            '(' => open.push(i),
            ')' if open.pop().is_none() => {
                return Some(format!(
                    "1:{}: parse error: unexpected right parenthesis ')'",
                    i + 1
                ));
            }
            _ => {}
        }
    }
    open.first().map(|_| {
        format!(
            "1:{}: parse error: unclosed left parenthesis",
            expr.chars().count() + 1
        )
    })
}

/// `2025-01-08T12:00:00Z` or unix seconds; `None` when neither.
fn time(value: Option<&String>) -> Option<i64> {
    let v = value?;
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp())
        .ok()
        .or_else(|| v.parse::<f64>().ok().map(|f| f as i64))
}

/// `1d`, `5m`, `30s`, `2h` or seconds.
fn step(value: Option<&String>) -> Option<i64> {
    let v = value?;
    if let Ok(f) = v.parse::<f64>() {
        return Some(f as i64);
    }
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: i64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(n * secs)
}

/// The sample a lookup at `t` sees: the latest in (t - 5m, t].
fn at(s: &Series, t: i64) -> Option<&String> {
    s.samples.range(t - 299..=t).next_back().map(|(_, v)| v)
}

fn success(kind: &str, result: Vec<Value>) -> Response {
    json(
        200,
        json!({"status": "success", "data": {"resultType": kind, "result": result}}),
    )
}

fn instant(params: &HashMap<String, String>, now: i64, series: &[Series]) -> Response {
    let t = match params.get("time") {
        None => now,
        Some(_) => match time(params.get("time")) {
            Some(t) => t,
            None => return error(400, "bad_data", "invalid parameter \"time\": cannot parse"),
        },
    };
    let result = series
        .iter()
        .filter_map(|s| at(s, t).map(|v| json!({"metric": s.labels, "value": [t, v]})))
        .collect();
    success("vector", result)
}

fn range(params: &HashMap<String, String>, series: &[Series]) -> Response {
    let (Some(start), Some(end), Some(step)) = (
        time(params.get("start")),
        time(params.get("end")),
        step(params.get("step")),
    ) else {
        return error(
            400,
            "bad_data",
            "invalid parameter \"start\", \"end\" or \"step\": cannot parse",
        );
    };
    if step <= 0 || end < start {
        return error(
            400,
            "bad_data",
            "end timestamp must not be before start time, and step must be positive",
        );
    }
    let mut result = Vec::new();
    for s in series {
        let points: Vec<Value> = (0..)
            .map(|i| start + i * step)
            .take_while(|t| *t <= end)
            .filter_map(|t| at(s, t).map(|v| json!([t, v])))
            .collect();
        if !points.is_empty() {
            result.push(json!({"metric": s.labels, "values": points}));
        }
    }
    success("matrix", result)
}
