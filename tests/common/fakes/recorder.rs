//! A stand-in for any management API (an IdP's user and grant lists, an
//! admin console, a webhook receiver): it records every request and answers
//! any method and path with a canned reply, `200 {"ok":true}` by default.
//! `reply` sets the answer for a path (any method), `serve_json` for `GET`s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::{bind, json, spawn};

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?` (empty when there is none).
    pub query: String,
    /// Header names in lower case; repeated headers joined with ", ".
    pub headers: HashMap<String, String>,
    /// The body as JSON; a `String` when it is not JSON, `Null` when empty.
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    replies: HashMap<String, (u16, Value)>,
    gets: HashMap<String, Value>,
    requests: Vec<Recorded>,
}

/// Handle on a running recorder; clones share its state.
#[derive(Clone)]
pub struct Recorder {
    url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let (listener, url) = bind().await;
        let r = Recorder {
            url,
            inner: Arc::default(),
        };
        let app = Router::new().fallback(record).with_state(r.clone());
        spawn(listener, app);
        r
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Answer every request for `path` (any method) with `status` and `body`.
    pub fn reply(&self, path: &str, status: u16, body: Value) {
        let mut s = self.inner.lock().unwrap();
        s.replies.insert(path.to_string(), (status, body));
    }

    /// Answer `GET path` with `200` and `body` (takes precedence over `reply`).
    pub fn serve_json(&self, path: &str, body: Value) {
        let mut s = self.inner.lock().unwrap();
        s.gets.insert(path.to_string(), body);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }
}

async fn record(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut names: HashMap<String, String> = HashMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        names
            .entry(name.as_str().to_string())
            .and_modify(|v| *v = format!("{v}, {value}"))
            .or_insert(value);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) if text.is_empty() => Value::Null,
        Err(_) => Value::String(text),
    };
    let path = uri.path().to_string();
    let mut s = r.inner.lock().unwrap();
    s.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: names,
        body,
    });
    if method == Method::GET
        && let Some(body) = s.gets.get(&path)
    {
        return json(200, body.clone());
    }
    match s.replies.get(&path) {
        Some((status, body)) => json(*status, body.clone()),
        None => json(200, json!({"ok": true})),
    }
}
