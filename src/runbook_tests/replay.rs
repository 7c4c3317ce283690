//! Recorded HTTP replies: a runbook test answers its runbook's calls from
//! these instead of the network, and keeps every call for the expectations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::compare::contains;
use super::format::{Fixture, Reply};
use crate::run::HttpReplay;
use crate::script::{HttpBody, HttpCall};

/// A fixture with its replies read in, and how many times it answered.
struct Loaded {
    method: String,
    url: String,
    query: BTreeMap<String, String>,
    body: Option<Value>,
    replies: Vec<Value>,
    used: usize,
}

/// A call the runbook made, as the expectations see it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub url: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

impl Call {
    pub fn to_json(&self) -> Value {
        json!({"method": self.method, "url": self.url, "query": self.query, "body": self.body})
    }
}

pub struct Replay {
    fixtures: Mutex<Vec<Loaded>>,
    pub calls: Mutex<Vec<Call>>,
}

impl Replay {
    /// Read the fixtures' reply files, relative to `dir`.
    ///
    /// Fails naming the fixture and the file that cannot be read or parsed.
    pub fn load(fixtures: &[&Fixture], dir: &Path) -> Result<Self, String> {
        let mut loaded = Vec::new();
        for f in fixtures {
            let what = format!("fixture {} {}", f.method, f.url);
            let mut replies: Vec<&Reply> = f.reply.iter().collect();
            replies.extend(f.replies.iter());
            if replies.is_empty() {
                return Err(format!("{what}: give it a `reply` or `replies`"));
            }
            let replies = replies
                .into_iter()
                .map(|r| reply_value(r, dir).map_err(|e| format!("{what}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            loaded.push(Loaded {
                method: f.method.to_ascii_uppercase(),
                url: f.url.clone(),
                query: f.query.clone(),
                body: f.body.clone(),
                replies,
                used: 0,
            });
        }
        Ok(Replay {
            fixtures: Mutex::new(loaded),
            calls: Mutex::new(Vec::new()),
        })
    }
}

fn reply_value(r: &Reply, dir: &Path) -> Result<Value, String> {
    let (body, parsed) = match (&r.json, &r.body, &r.file) {
        (Some(j), _, _) => (j.to_string(), j.clone()),
        (None, Some(b), _) => (b.clone(), serde_json::from_str(b).unwrap_or(Value::Null)),
        (None, None, Some(file)) => {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
            let parsed = if file.ends_with(".json") {
                serde_json::from_str(&text)
                    .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?
            } else {
                Value::Null
            };
            (text, parsed)
        }
        (None, None, None) => (String::new(), Value::Null),
    };
    let headers: BTreeMap<String, String> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    if let Some(cause) = &r.error {
        return Ok(json!({ "error": cause }));
    }
    Ok(json!({
        "status": r.status,
        "ok": (200..300).contains(&r.status),
        "headers": headers,
        "body": body,
        "json": parsed,
        "elapsed_ms": 0,
    }))
}

/// The call's URL without its query, and every query pair (from the URL and
/// from `query`).
fn split(call: &HttpCall) -> Result<(String, BTreeMap<String, String>), String> {
    let mut url =
        url::Url::parse(&call.url).map_err(|e| format!("{}: not a URL ({e})", call.url))?;
    let mut query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    query.extend(call.query.iter().cloned());
    url.set_query(None);
    Ok((url.to_string(), query))
}

fn body_json(body: &HttpBody) -> Value {
    match body {
        HttpBody::None => Value::Null,
        HttpBody::Json(v) => v.clone(),
        HttpBody::Form(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
        HttpBody::Text(t) => Value::String(t.clone()),
    }
}

impl HttpReplay for Replay {
    fn answer(&self, call: &HttpCall) -> Result<Value, String> {
        let (url, query) = split(call)?;
        let recorded = Call {
            method: call.method.clone(),
            url: url.clone(),
            query: query.clone(),
            body: body_json(&call.body),
        };
        self.calls
            .lock()
            .expect("calls lock")
            .push(recorded.clone());
        let mut fixtures = self.fixtures.lock().expect("fixtures lock");
        let found = fixtures.iter_mut().find(|f| {
            f.method == recorded.method
                && f.url.trim_end_matches('/') == url.trim_end_matches('/')
                && f.query.iter().all(|(k, v)| query.get(k) == Some(v))
                && f.body.as_ref().is_none_or(|b| contains(&recorded.body, b))
        });
        let Some(f) = found else {
            let shown = if query.is_empty() {
                url
            } else {
                format!(
                    "{url}?{}",
                    form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(query.iter())
                        .finish()
                )
            };
            return Err(format!(
                "http {} {shown}: no recorded reply matches this request; add one to the test's `http:`",
                call.method
            ));
        };
        // A 429/503 the runbook asked to retry is answered by the next reply,
        // as the live client would after waiting `Retry-After`.
        let mut tries = 0;
        loop {
            let mut reply = f.replies[f.used.min(f.replies.len() - 1)].clone();
            f.used += 1;
            if let Some(cause) = reply["error"].as_str() {
                return Err(format!("http {} {url} failed: {cause}", call.method));
            }
            reply["url"] = json!(url);
            let status = reply["status"].as_u64().unwrap_or(200);
            if matches!(status, 429 | 503)
                && crate::outbound::retryable(call)
                && tries < call.retries
                && f.used < f.replies.len()
            {
                tries += 1;
                continue;
            }
            return Ok(reply);
        }
    }
}
