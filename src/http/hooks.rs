//! `POST /hooks/{path}`: the HTTP side of a webhook delivery. Find the
//! route, bound the body, authenticate on the raw bytes, check the media
//! type; the run intake judges the delivery and commits it (with its run)
//! before the answer: status codes, bodies and headers are decided here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::{AppState, auth};
use crate::run::intake::{Arrival, Verdict, delivery, judge, mask_delivery};
use crate::runbook::{Runbook, Trigger, WebhookAuth, WebhookTrigger};
use crate::secrets::Redactor;
use crate::store::{Accepted, DeliveryOutcome, RunStatus};
use crate::telemetry::WEBHOOK_DELIVERIES;

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

/// The query string as kept: a parameter whose name says it is a credential
/// (by the header rule, `_` read as `-`, and `sig`, `signature`, `key`,
/// `auth…`) is masked, as a sender that puts a token in the URL beside its
/// signed header would otherwise have it stored and served.
fn masked_query(query: &HashMap<String, String>) -> serde_json::Value {
    let credential = |name: &str| {
        let name = name.to_ascii_lowercase().replace('_', "-");
        sensitive(&name, None)
            || ["sig", "key"].contains(&name.as_str())
            || name.contains("signature")
            || name.starts_with("auth")
    };
    let kept: BTreeMap<&str, &str> = query
        .iter()
        .map(|(k, v)| (k.as_str(), if credential(k) { "***" } else { v.as_str() }))
        .collect();
    serde_json::to_value(kept).unwrap_or_default()
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
    if app.closing.is_cancelled() {
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
        // Answered as a request that failed authentication, after the same
        // size check, so a scanner cannot tell which runbooks exist; the
        // operator finds the reason in the log and the counter.
        read_body("unknown", &headers, body, app.max_body).await?;
        count("unknown", "not_found");
        app.auth_failures
            .note("(none)", "no runbook answers at this path");
        return Err(Problem::unauthorized());
    };
    let Trigger::Webhook(w) = &rb.triggers[idx] else {
        unreachable!("the index holds webhook triggers")
    };
    let raw = read_body(&rb.name, &headers, body, app.max_body).await?;
    let kind = media_type(&headers);
    let secret = w.secret.as_deref().and_then(|n| app.secrets.get(n));
    if let Err(reason) = auth::verify(
        w,
        secret.as_deref(),
        &headers,
        &raw,
        crate::clock::now().timestamp(),
    ) {
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
    let query = masked_query(&query);
    let arrival = Arrival {
        trigger: w,
        content_type: &kind,
        raw: &raw,
        headers: masked(&headers, w.header.as_deref()),
        query,
    };
    commit(&app, &rb, arrival).await
}

/// Judge an authenticated delivery, commit it with its run, and answer.
async fn commit(
    app: &AppState,
    rb: &Arc<Runbook>,
    arrival: Arrival<'_>,
) -> Result<Response, Problem> {
    let verdict = judge(&app.sandbox, app.timezone, &arrival).await;
    let (recorded_as, rejected) = match &verdict {
        Verdict::Rejected { detail } => (DeliveryOutcome::Rejected, Some(detail.clone())),
        Verdict::Filtered { .. } => (DeliveryOutcome::Filtered, None),
        Verdict::Run { .. } => (DeliveryOutcome::Accepted, None),
    };
    let d = delivery(
        rb,
        arrival.trigger,
        verdict,
        arrival.headers,
        arrival.raw,
        crate::clock::now(),
    );
    let secrets = rb.secrets.iter().filter_map(|n| app.secrets.get(n));
    let d = mask_delivery(d, &Redactor::new(secrets));
    let outcome = app.intake.accept(rb.clone(), d).await?;
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

/// The body, refused (413) past `limit` bytes, before or while it is read.
async fn read_body(
    runbook: &str,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, Problem> {
    let too_large = || {
        count(runbook, "too_large");
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload too large",
            format!("webhook bodies are limited to {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    to_bytes(body, limit).await.map_err(|_| too_large())
}

/// The declared media type, lowercase, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn reply(runbook: &str, outcome: Accepted, recorded_as: DeliveryOutcome) -> Response {
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
            count(runbook, recorded_as.as_str());
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
