//! Judging a webhook delivery that passed authentication, as one function
//! that both the daemon (`POST /hooks/…`) and `runbookd test` use: read the
//! payload as data, take its dedup key (`dedup:`, or the sender's delivery
//! id), apply `when:`. What it decides is a [`Verdict`]; [`delivery`] turns
//! it into the record the store commits.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::{TriggerInfo, default_params, expr, new_run};
use crate::runbook::{Runbook, WebhookAuth, WebhookTrigger};
use crate::script::Sandbox;
use crate::secrets::Redactor;
use crate::store::{Delivery, DeliveryOutcome, Fate, TriggerKind};

/// A delivery as it arrived, after authentication.
pub struct Arrival<'a> {
    pub trigger: &'a WebhookTrigger,
    /// The declared media type, lowercase, without parameters.
    pub content_type: &'a str,
    pub raw: &'a [u8],
    /// The headers as runs see them: names lowercase, credentials masked.
    pub headers: Value,
    pub query: Value,
}

/// What a delivery becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A run, with what its scripts see as `trigger`.
    Run {
        data: Value,
        dedup_key: Option<String>,
    },
    /// `when:` is false: recorded, nothing runs (a repeat is still a duplicate).
    Filtered { dedup_key: Option<String> },
    /// It cannot be read or judged. It takes no dedup key, so the sender's
    /// corrected retry is not a repeat.
    Rejected { detail: String },
}

/// Read the payload as data, by its content type.
///
/// Fails with a sentence when a JSON body is not valid JSON, or gives one
/// key twice in an object (see `strict_json`).
pub fn parse_body(content_type: &str, raw: &[u8]) -> Result<Value, String> {
    if content_type == "application/json" || content_type.ends_with("+json") {
        super::strict_json::parse(raw).map_err(|e| format!("the body is not valid JSON: {e}"))
    } else if content_type == "application/x-www-form-urlencoded" {
        let map: serde_json::Map<String, Value> = form_urlencoded::parse(raw)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        Ok(Value::Object(map))
    } else {
        Ok(Value::String(String::from_utf8_lossy(raw).into_owned()))
    }
}

/// The id a sender gives each delivery (and repeats on a retry), by the
/// webhook's preset, else the common `Idempotency-Key`/`X-Webhook-Id` headers.
fn sender_id(t: &WebhookTrigger, headers: &Value, body: &Value) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let by_preset = match t.auth {
        WebhookAuth::Github => header("x-github-delivery"),
        WebhookAuth::Standard => header("webhook-id"),
        WebhookAuth::Pagerduty => header("x-webhook-id"),
        WebhookAuth::Stripe => body.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    by_preset
        .or_else(|| header("idempotency-key"))
        .or_else(|| header("x-webhook-id"))
        .filter(|s| !s.is_empty())
}

/// Dedup keys are chosen by the sender; longer than this, the key is kept as
/// its digest: `sha256:` and 64 hex digits.
pub const MAX_DEDUP_KEY: usize = 200;

/// The key as stored and compared: itself, or its digest when it is long, so
/// a sender cannot make the database keep 60,000 characters per delivery and
/// a repeat of a long key is still a duplicate.
fn bounded_key(key: String) -> String {
    if key.len() <= MAX_DEDUP_KEY {
        return key;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    format!("sha256:{}", hex::encode(digest))
}

/// Decide what an authenticated delivery becomes.
pub async fn judge(sandbox: &Arc<Sandbox>, tz: Tz, a: &Arrival<'_>) -> Verdict {
    let rejected = |detail: String| Verdict::Rejected { detail };
    let body = match parse_body(a.content_type, a.raw) {
        Ok(b) => b,
        Err(detail) => return rejected(detail),
    };
    let w = a.trigger;
    // What scripts see as `trigger`: the payload as data, never as code.
    let raw = String::from_utf8_lossy(a.raw).into_owned();
    let data = serde_json::json!({ "kind": TriggerKind::Webhook, "body": body, "headers": a.headers, "query": a.query, "raw": raw });
    let dedup_key = match &w.dedup {
        Some(script) => match expr::eval(sandbox, script, &data, tz).await {
            Ok(Value::Null) => None,
            Ok(Value::String(s)) => Some(s),
            Ok(other) => Some(other.to_string()),
            Err(e) => return rejected(format!("`dedup:` failed: {e}")),
        },
        None => sender_id(w, &a.headers, &data["body"]),
    }
    .map(bounded_key);
    let Some(when) = &w.when else {
        return Verdict::Run { data, dedup_key };
    };
    match expr::eval(sandbox, when, &data, tz).await {
        Ok(Value::Bool(true)) => Verdict::Run { data, dedup_key },
        Ok(Value::Bool(false)) => Verdict::Filtered { dedup_key },
        Ok(other) => rejected(format!("`when:` must give true or false, not {other}")),
        Err(e) => rejected(format!("`when:` failed: {e}")),
    }
}

/// The record of a judged delivery of `rb`'s webhook `w`: what the store
/// commits (the run it makes, with the runbook's default params).
pub fn delivery(
    rb: &Runbook,
    w: &WebhookTrigger,
    verdict: Verdict,
    headers: Value,
    raw: &[u8],
    now: DateTime<Utc>,
) -> Delivery {
    let trigger_key = w.key();
    let (dedup_key, fate) = match verdict {
        Verdict::Run { data, dedup_key } => {
            let trigger = TriggerInfo {
                kind: TriggerKind::Webhook,
                key: Some(trigger_key.clone()),
                scheduled_at: None,
                data,
            };
            let limit = rb
                .limit
                .map(|l| (l.runs, now - TimeDelta::from_std(l.per).unwrap_or_default()));
            let run = new_run(rb, &trigger, default_params(rb), false, now);
            (dedup_key, Fate::Run { run, limit })
        }
        Verdict::Filtered { dedup_key } => (
            dedup_key,
            Fate::Record {
                outcome: DeliveryOutcome::Filtered,
                detail: "`when:` is false".into(),
            },
        ),
        Verdict::Rejected { detail } => (
            None,
            Fate::Record {
                outcome: DeliveryOutcome::Rejected,
                detail,
            },
        ),
    };
    Delivery {
        runbook: rb.name.clone(),
        trigger_key,
        received_at: now,
        dedup_key,
        dedup_until: now + TimeDelta::from_std(w.dedup_window).unwrap_or(TimeDelta::hours(72)),
        headers,
        body: String::from_utf8_lossy(raw).into_owned(),
        fate,
    }
}

/// The record as it may be kept: the runbook's secret values masked in what
/// was received (headers, body, dedup key), in why it was refused, and in the
/// run's trigger data, so a sender echoing a token does not store it
/// readable. Scripts read the trigger data from the record, so they see it
/// masked too.
pub fn mask_delivery(mut d: Delivery, redactor: &Redactor) -> Delivery {
    d.headers = redactor.redact_json(d.headers);
    d.body = redactor.redact(&d.body);
    d.dedup_key = d.dedup_key.map(|k| redactor.redact(&k));
    match &mut d.fate {
        Fate::Run { run, .. } => {
            run.trigger_data = redactor.redact_json(std::mem::take(&mut run.trigger_data));
        }
        Fate::Record { detail, .. } => *detail = redactor.redact(detail),
    }
    d
}
