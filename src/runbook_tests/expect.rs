//! What a run did, compared with what its test case expects.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::compare::check;
use super::format::Expect;
use crate::store::{IssueFilter, IssueStatus, Store};
use strum::VariantArray;

/// What the run did, to compare with the expectations.
pub(super) struct Actual {
    pub status: String,
    pub error: Option<String>,
    pub output: Value,
    pub calls: Vec<Value>,
    pub store: Arc<dyn Store>,
    pub runbook: String,
    pub now: DateTime<Utc>,
    pub log: Vec<String>,
}

impl Actual {
    pub async fn compare(&self, e: &Expect) -> Vec<String> {
        let mut failures = Vec::new();
        let mut push = |f: Option<String>| failures.extend(f);
        let status = e.status.as_deref().unwrap_or("succeeded");
        push(check("status", &json!(self.status), &json!(status)));
        if status == "succeeded" && self.status != "succeeded" {
            push(
                self.error
                    .as_ref()
                    .map(|err| format!("the run's error: {err}")),
            );
        }
        if let Some(want) = &e.error {
            let got = self.error.clone().unwrap_or_default();
            if !got.contains(want.as_str()) {
                push(Some(format!(
                    "error: expected it to contain \"{want}\", it was \"{got}\""
                )));
            }
        }
        if let Some(want) = &e.output {
            push(check("output", &self.output, want));
        }
        if let Some(want) = &e.http {
            // A "METHOD URL" line compares with the call written the same way.
            let got: Vec<Value> = self
                .calls
                .iter()
                .enumerate()
                .map(|(i, c)| match want.get(i) {
                    Some(Value::String(_)) => json!(format!(
                        "{} {}",
                        c["method"].as_str().unwrap_or(""),
                        c["url"].as_str().unwrap_or("")
                    )),
                    _ => c.clone(),
                })
                .collect();
            push(check(
                "http calls",
                &Value::Array(got),
                &Value::Array(want.clone()),
            ));
        }
        if let Some(want) = &e.emails {
            push(self.emails(want).await);
        }
        if let Some(want) = &e.issues {
            push(self.issues(want).await);
        }
        if let Some(want) = &e.state {
            // `key: null` expects the key to be absent.
            let mut got = serde_json::Map::new();
            for (k, w) in want {
                match self.store.state_get(&self.runbook, k, self.now).await {
                    Ok(Some(v)) => {
                        got.insert(k.clone(), v);
                    }
                    _ if w.is_null() => {
                        got.insert(k.clone(), Value::Null);
                    }
                    _ => {}
                }
            }
            push(check(
                "state",
                &Value::Object(got),
                &Value::Object(want.clone()),
            ));
        }
        for want in &e.logs {
            if !self.log.iter().any(|l| l.contains(want.as_str())) {
                push(Some(format!("log: no line contains \"{want}\"")));
            }
        }
        failures
    }

    /// Emails as `{to, cc, subject, text, html}`; an expected `contains:`
    /// list is looked for in the text part (the HTML when there is no text),
    /// `html_contains:` in the HTML part.
    async fn emails(&self, want: &[Value]) -> Option<String> {
        let mut rows = match self.store.list_emails(None, 1000).await {
            Ok(r) => r,
            Err(e) => return Some(format!("emails: cannot read the outbox: {e}")),
        };
        rows.sort_by_key(|r| r.id);
        let got: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let text = r.text.clone().unwrap_or_default();
                let html = r.html.clone().unwrap_or_default();
                let mut v = json!({"to": r.to, "cc": r.cc, "subject": r.subject, "text": text, "html": html});
                let plain = if text.is_empty() { &html } else { &text };
                for (field, body) in [("contains", plain), ("html_contains", &html)] {
                    if let Some(list) = want.get(i).and_then(|w| w[field].as_array()) {
                        v[field] = list
                            .iter()
                            .map(|s| {
                                let s = s.as_str().unwrap_or("");
                                if body.contains(s) {
                                    json!(s)
                                } else {
                                    json!(format!("(not in the email) {s}"))
                                }
                            })
                            .collect();
                    }
                }
                v
            })
            .collect();
        check("emails", &Value::Array(got), &Value::Array(want.to_vec()))
    }

    /// Every issue, in key order.
    async fn issues(&self, want: &[Value]) -> Option<String> {
        let filter = IssueFilter {
            statuses: IssueStatus::VARIANTS.to_vec(),
            severity: None,
            runbook: None,
            older_than: None,
            limit: 10_000,
        };
        let mut rows = match self.store.list_issues(&filter).await {
            Ok(r) => r,
            Err(e) => return Some(format!("issues: cannot read them: {e}")),
        };
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        let got: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        check("issues", &Value::Array(got), &Value::Array(want.to_vec()))
    }
}
