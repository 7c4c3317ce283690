//! `POST /hooks/{path}`: authenticate on the raw bytes, read the payload as
//! data, decide its fate (`dedup:`, `when:`, `limit:`), and commit the
//! delivery with its run before answering 202. Commits are batched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use tokio::sync::{mpsc, oneshot};

use super::problem::Problem;
use super::{AppState, auth, expr};
use crate::run::Dispatcher;
use crate::runbook::{Concurrency, Runbook, Trigger, WebhookAuth, WebhookTrigger};
use crate::store::{Accepted, Admission, Delivery, Fate, NewRun, RunStatus, Store, StoreError};
use crate::telemetry::WEBHOOK_DELIVERIES;

/// At most this many deliveries share one commit.
const MAX_BATCH: usize = 256;

type Job = (Delivery, oneshot::Sender<Result<Accepted, StoreError>>);

/// The group-commit writer: requests queue their delivery, one task commits
/// whatever has gathered in one transaction, then answers each.
#[derive(Clone)]
pub struct Acceptor {
    tx: mpsc::Sender<Job>,
}

impl Acceptor {
    pub fn start(store: Arc<dyn Store>, dispatcher: Arc<Dispatcher>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let (deliveries, replies): (Vec<Delivery>, Vec<_>) = batch.into_iter().unzip();
                match store.accept_deliveries(&deliveries).await {
                    Ok(results) => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    Err(e) => {
                        // Each waiting request hears the same cause (a full
                        // disk is told apart: it gets its own answer).
                        let full = matches!(e, StoreError::Full);
                        let text = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(if full {
                                StoreError::Full
                            } else {
                                StoreError::Database(text.clone())
                            }));
                        }
                    }
                }
                let d = dispatcher.clone();
                tokio::spawn(async move { d.pump().await });
            }
        });
        Acceptor { tx }
    }

    /// Commit a delivery (with its run); returns once it is durable.
    pub async fn accept(&self, d: Delivery) -> Result<Accepted, Problem> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((d, reply))
            .await
            .map_err(|_| Problem::internal("the acceptor stopped"))?;
        rx.await
            .map_err(|_| Problem::internal("the acceptor stopped"))?
            .map_err(Problem::from)
    }
}

/// Header names whose values are credentials: masked in the deliveries log
/// and in what scripts see.
fn sensitive(name: &str, extra: Option<&str>) -> bool {
    const NAMES: &[&str] = &[
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-hub-signature",
        "x-hub-signature-256",
        "stripe-signature",
        "x-slack-signature",
        "webhook-signature",
        "x-pagerduty-signature",
        "x-grafana-alerting-signature",
    ];
    NAMES.contains(&name)
        || extra.is_some_and(|e| e.eq_ignore_ascii_case(name))
        || ["token", "secret", "password", "api-key", "apikey"]
            .iter()
            .any(|w| name.contains(w))
}

fn masked(headers: &HeaderMap, extra: Option<&str>) -> serde_json::Value {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        let v = if sensitive(&name, extra) {
            "***".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.insert(name, serde_json::Value::String(v));
    }
    serde_json::to_value(out).unwrap_or_default()
}

fn expected_type(w: &WebhookTrigger) -> String {
    match &w.content_type {
        Some(t) => t.to_ascii_lowercase(),
        None if w.auth == WebhookAuth::Slack => "application/x-www-form-urlencoded".into(),
        None => "application/json".into(),
    }
}

/// Read the payload as data, by its content type.
fn parse_body(kind: &str, raw: &[u8]) -> Result<serde_json::Value, String> {
    if kind == "application/json" || kind.ends_with("+json") {
        serde_json::from_slice(raw).map_err(|e| format!("the body is not valid JSON: {e}"))
    } else if kind == "application/x-www-form-urlencoded" {
        let map: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(raw)
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
        Ok(serde_json::Value::Object(map))
    } else {
        Ok(serde_json::Value::String(
            String::from_utf8_lossy(raw).into_owned(),
        ))
    }
}

fn count(runbook: &str, result: &'static str) {
    metrics::counter!(WEBHOOK_DELIVERIES, "runbook" => runbook.to_string(), "result" => result)
        .increment(1);
}

pub async fn receive(
    State(app): State<Arc<AppState>>,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    if app.intake.is_cancelled() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "runbookd is shutting down; retry shortly",
        )
        .retry(5));
    }
    let path = format!("/hooks/{rest}");
    let found = app.registry.read().expect("registry lock").webhook(&path);
    let Some((rb, idx)) = found else {
        count("unknown", "not_found");
        return Err(Problem::not_found(format!("no webhook answers at {path}")));
    };
    let Trigger::Webhook(w) = &rb.triggers[idx] else {
        unreachable!("the index holds webhook triggers")
    };
    let limit = app.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        count(&rb.name, "too_large");
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload too large",
            format!("webhook bodies are limited to {limit} bytes"),
        ));
    }
    let raw = to_bytes(body, limit).await.map_err(|_| {
        count(&rb.name, "too_large");
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload too large",
            format!("webhook bodies are limited to {limit} bytes"),
        )
    })?;
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let secret = w.secret.as_deref().and_then(|n| app.secrets.get(n));
    if let Err(reason) = auth::verify(w, secret.as_deref(), &headers, &raw, Utc::now().timestamp())
    {
        count(&rb.name, "unauthorized");
        app.auth_failures.note(&rb.name, reason);
        return Err(Problem::unauthorized());
    }
    // Checked after authentication, so an anonymous caller learns nothing
    // about which webhooks exist from it.
    let expected = expected_type(w);
    if kind != expected {
        count(&rb.name, "unsupported_type");
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("this webhook takes {expected}"),
        ));
    }
    let delivery = build(&app, &rb, w, &headers, &query, &raw, &kind).await;
    let (recorded_as, rejected) = match &delivery.fate {
        Fate::Record {
            outcome: "rejected",
            detail,
        } => ("rejected", Some(detail.clone())),
        Fate::Record { outcome, .. } => (*outcome, None),
        Fate::Run { .. } => ("accepted", None),
    };
    let outcome = app.acceptor.accept(delivery).await?;
    // `replace`: a new run (not a repeat, not throttled) makes the active one stop.
    if rb.concurrency == Concurrency::Replace
        && matches!(
            outcome,
            Accepted::Run {
                status: RunStatus::Queued,
                ..
            }
        )
    {
        app.dispatcher.cancel_runbook(&rb.name);
    }
    if let Some(detail) = rejected {
        count(&rb.name, "rejected");
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable delivery",
            detail,
        ));
    }
    Ok(reply(&rb.name, outcome, recorded_as))
}

async fn build(
    app: &AppState,
    rb: &Arc<Runbook>,
    w: &WebhookTrigger,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    raw: &[u8],
    kind: &str,
) -> Delivery {
    let now = Utc::now();
    let header_view = masked(headers, w.header.as_deref());
    let raw_text = String::from_utf8_lossy(raw).into_owned();
    let mut d = Delivery {
        runbook: rb.name.clone(),
        trigger_key: format!("webhook {}", w.path),
        received_at: now,
        dedup_key: None,
        dedup_until: now + TimeDelta::from_std(w.dedup_window).unwrap_or(TimeDelta::hours(72)),
        headers: header_view.clone(),
        body: raw_text.clone(),
        fate: Fate::Record {
            outcome: "rejected",
            detail: String::new(),
        },
    };
    let body = match parse_body(kind, raw) {
        Ok(b) => b,
        Err(detail) => {
            d.fate = Fate::Record {
                outcome: "rejected",
                detail,
            };
            return d;
        }
    };
    // What scripts see as `trigger`: the payload as data, never as code.
    let trigger = serde_json::json!({ "kind": "webhook", "body": body, "headers": header_view, "query": query, "raw": raw_text });
    d.dedup_key = match &w.dedup {
        Some(script) => match expr::eval(&app.sandbox, script, &trigger, app.timezone).await {
            Ok(serde_json::Value::Null) => None,
            Ok(serde_json::Value::String(s)) => Some(s),
            Ok(other) => Some(other.to_string()),
            Err(e) => {
                d.fate = Fate::Record {
                    outcome: "rejected",
                    detail: format!("`dedup:` failed: {e}"),
                };
                return d;
            }
        },
        None => auth::delivery_id(w, headers, &body),
    };
    if let Some(when) = &w.when {
        match expr::eval(&app.sandbox, when, &trigger, app.timezone).await {
            Ok(serde_json::Value::Bool(true)) => {}
            Ok(serde_json::Value::Bool(false)) => {
                d.fate = Fate::Record {
                    outcome: "filtered",
                    detail: "`when:` is false".into(),
                };
                return d;
            }
            Ok(other) => {
                d.fate = Fate::Record {
                    outcome: "rejected",
                    detail: format!("`when:` must give true or false, not {other}"),
                };
                return d;
            }
            Err(e) => {
                d.fate = Fate::Record {
                    outcome: "rejected",
                    detail: format!("`when:` failed: {e}"),
                };
                return d;
            }
        }
    }
    if let Err(e) = app.ensure_version(rb).await {
        d.fate = Fate::Record {
            outcome: "rejected",
            detail: format!("could not record the runbook version: {e}"),
        };
        return d;
    }
    let params = crate::run::bind_cli_params(rb, &[])
        .map(serde_json::Value::Object)
        .unwrap_or_default();
    d.fate = Fate::Run {
        run: NewRun {
            runbook: rb.name.clone(),
            version_hash: rb.version.hash.clone(),
            trigger_kind: "webhook".into(),
            trigger_key: Some(d.trigger_key.clone()),
            scheduled_at: None,
            status: RunStatus::Queued,
            params,
            trigger_data: trigger,
            dry_run: false,
            created_at: now,
            active_key: None,
        },
        admission: match rb.concurrency {
            Concurrency::Allow => Admission::Free,
            Concurrency::Forbid => Admission::Exclusive,
            Concurrency::Queue | Concurrency::Replace => Admission::Queued,
        },
        limit: rb
            .limit
            .map(|l| (l.runs, now - TimeDelta::from_std(l.per).unwrap_or_default())),
    };
    d
}

fn reply(runbook: &str, outcome: Accepted, recorded_as: &'static str) -> Response {
    use serde_json::json;
    match outcome {
        Accepted::Run {
            delivery,
            run,
            status,
        } => {
            if matches!(status, RunStatus::Throttled | RunStatus::Skipped) {
                metrics::counter!(crate::telemetry::RUNS_TOTAL, "runbook" => runbook.to_string(), "status" => status.as_str()).increment(1);
            }
            count(
                runbook,
                match status {
                    RunStatus::Throttled => "throttled",
                    RunStatus::Skipped => "skipped",
                    _ => "accepted",
                },
            );
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "run_id": run, "delivery_id": delivery, "status": status })),
            )
                .into_response()
        }
        Accepted::Duplicate { original, run, .. } => {
            count(runbook, "duplicate");
            (
                StatusCode::OK,
                axum::Json(json!({ "run_id": run, "delivery_id": original, "duplicate": true })),
            )
                .into_response()
        }
        Accepted::Recorded { delivery } => {
            count(runbook, recorded_as);
            (
                StatusCode::OK,
                axum::Json(
                    json!({ "delivery_id": delivery, "run_id": null, "outcome": recorded_as }),
                ),
            )
                .into_response()
        }
    }
}
