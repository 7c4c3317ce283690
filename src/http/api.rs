//! `/api/v1`: runbooks, runs, deliveries, emails, manual runs, cancel, reload, prune.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::DateTime;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::AppState;
use super::actions::{self, find};
use super::problem::Problem;
use crate::run::bind_json_params;
use crate::runbook::Runbook;
use crate::schedule::summary::RunbookSummary;
use crate::store::{EmailStatus, IssueStatus, RunFilter, RunStatus, Severity, StoredName};
use strum::VariantArray;

/// `?wait=true` waits at most this long for the run to end.
/// (below the server's request timeout, so the reply always arrives).
const WAIT_LIMIT: Duration = Duration::from_secs(25);

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/runbooks", get(list_runbooks))
        .route("/runbooks/{name}", get(get_runbook))
        .route("/runbooks/{name}/runs", post(start_run))
        .route("/runs", get(list_runs))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/cancel", post(cancel_run))
        .route("/deliveries", get(list_deliveries))
        .route("/emails", get(list_emails))
        .route("/reload", post(reload))
        .route("/prune", post(prune))
        .route("/issues", get(list_issues))
        .route("/issues/{key}/ack", post(ack_issue))
        .route("/issues/{key}/resolve", post(resolve_issue))
        .route_layer(middleware::from_fn_with_state(state, require_token))
}

/// A bearer token is required when one is configured (and one must be when
/// listening beyond loopback).
async fn require_token(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.api_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())));
        if !ok {
            let mut resp = Problem::unauthorized().into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    next.run(req).await
}

fn runbook_json(rb: &Runbook, last: crate::store::LastRun) -> serde_json::Value {
    let s = RunbookSummary::new(rb, last, crate::clock::now());
    serde_json::json!({
        "name": s.name,
        "description": s.description,
        "enabled": s.enabled,
        "triggers": s.triggers,
        "params": rb.params.iter().map(|p| serde_json::json!({"name": p.name, "type": p.kind.as_str(), "default": p.default, "required": p.required, "description": p.description})).collect::<Vec<_>>(),
        "version": rb.version.hash,
        "next_fire": s.next_fire,
        "last_run": s.last.map(|r| serde_json::json!({"id": r.id, "status": r.status, "finished_at": r.finished_at, "error": r.error})),
        "last_success": s.last_success,
        "health": s.health,
        "health_note": s.health_note,
        "version_skew": s.version_skew,
        "version_skew_note": s.version_skew_note,
    })
}

async fn list_runbooks(
    State(app): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, Problem> {
    let (all, errors) = {
        let reg = app.registry.read().expect("registry lock");
        (
            reg.all(),
            reg.errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
    };
    let names: Vec<String> = all.iter().map(|rb| rb.name.clone()).collect();
    let mut last = crate::schedule::summary::last_runs(app.store.as_ref(), &names).await?;
    let out: Vec<serde_json::Value> = all
        .iter()
        .map(|rb| runbook_json(rb, last.remove(&rb.name).unwrap_or_default()))
        .collect();
    Ok(Json(
        serde_json::json!({ "runbooks": out, "errors": errors }),
    ))
}

async fn get_runbook(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let rb = find(&app, &name)?;
    let last =
        crate::schedule::summary::last_runs(app.store.as_ref(), std::slice::from_ref(&rb.name))
            .await?
            .remove(&rb.name)
            .unwrap_or_default();
    Ok(Json(runbook_json(&rb, last)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartBody {
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    /// Perform reads, record the writes instead of doing them.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

async fn start_run(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<WaitQuery>,
    body: Option<Json<StartBody>>,
) -> Result<Response, Problem> {
    let rb = find(&app, &name)?;
    let StartBody { params, dry_run } = body.map(|b| b.0).unwrap_or_default();
    let params = bind_json_params(&rb, &params).map_err(|p| Problem::bad_request(p.join("; ")))?;
    let id = actions::start_manual(&app, rb, params, dry_run).await?;
    if !q.wait {
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "run_id": id })).into_response(),
        )
            .into_response());
    }
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        let detail = app
            .store
            .run_detail(id)
            .await?
            .ok_or_else(|| Problem::internal("a run vanished"))?;
        if !matches!(detail.run.status, RunStatus::Queued | RunStatus::Running) {
            return Ok((StatusCode::OK, Json(detail)).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "run_id": id, "status": detail.run.status })),
            )
                .into_response());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Deserialize)]
struct RunsQuery {
    runbook: Option<String>,
    status: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
    cursor: Option<i64>,
}

async fn list_runs(
    State(app): State<Arc<AppState>>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let status = named::<RunStatus>("status", q.status.as_deref())?;
    let since = match &q.since {
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    Problem::bad_request(format!("since \"{s}\" is not an RFC 3339 time"))
                })?
                .to_utc(),
        ),
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let runs = app
        .store
        .list_runs(&RunFilter {
            runbook: q.runbook,
            status,
            before: q.cursor,
            since,
            limit,
        })
        .await?;
    let next = (runs.len() as u32 == limit)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    Ok(Json(
        serde_json::json!({ "runs": runs, "next_cursor": next }),
    ))
}

async fn get_run(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Problem> {
    let detail = app
        .store
        .run_detail(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no run {id}")))?;
    let mut v = serde_json::to_value(&detail).map_err(Problem::internal)?;
    v["version"] = serde_json::to_value(app.store.version(&detail.run.version_hash).await?)
        .map_err(Problem::internal)?;
    Ok(Json(v))
}

async fn cancel_run(
    State(app): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, Problem> {
    Ok(Json(match actions::cancel(&app, id).await? {
        actions::Cancelled::Now => serde_json::json!({ "run_id": id, "cancelled": true }),
        actions::Cancelled::Stopping => serde_json::json!({ "run_id": id, "cancelling": true }),
    }))
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    runbook: Option<String>,
    limit: Option<u32>,
    cursor: Option<i64>,
}

async fn list_deliveries(
    State(app): State<Arc<AppState>>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = app
        .store
        .list_deliveries(q.runbook.as_deref(), q.cursor, limit)
        .await?;
    let next = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(
        serde_json::json!({ "deliveries": rows, "next_cursor": next }),
    ))
}

#[derive(Deserialize)]
struct EmailsQuery {
    status: Option<String>,
    limit: Option<u32>,
}

/// The outbox, newest first, each email with every recipient's result
/// (`runbookd emails --json` prints the same rows).
async fn list_emails(
    State(app): State<Arc<AppState>>,
    Query(q): Query<EmailsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let status = q
        .status
        .as_deref()
        .map(|s| EmailStatus::named("status", s))
        .transpose()
        .map_err(Problem::bad_request)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = app.store.list_emails(status, limit).await?;
    Ok(Json(serde_json::json!({ "emails": rows })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    /// Instead of the configured retention, e.g. `30d`.
    older_than: Option<String>,
}

async fn prune(
    State(app): State<Arc<AppState>>,
    body: Option<Json<PruneBody>>,
) -> Result<Json<serde_json::Value>, Problem> {
    let keep = match body.and_then(|b| b.0.older_than) {
        Some(t) => crate::duration::parse(&t)
            .map_err(|e| Problem::bad_request(format!("older_than: {e}")))?,
        None => app.retention,
    };
    let cutoff = crate::store::prune_cutoff(crate::clock::now(), keep)
        .ok_or_else(|| Problem::bad_request("older_than is too long"))?;
    let pruned = app.store.prune(cutoff).await?;
    Ok(Json(serde_json::json!({
        "pruned": pruned,
        "cutoff": cutoff,
        "older_than": crate::duration::spec(keep),
    })))
}

async fn reload(State(app): State<Arc<AppState>>) -> Json<super::ReloadReport> {
    Json((app.reload)().await)
}

#[derive(Deserialize)]
struct IssuesQuery {
    status: Option<String>,
    severity: Option<String>,
    runbook: Option<String>,
    limit: Option<u32>,
}

async fn list_issues(
    State(app): State<Arc<AppState>>,
    Query(q): Query<IssuesQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    let statuses = match q.status.as_deref() {
        Some("all") => IssueStatus::VARIANTS.to_vec(),
        given => named::<IssueStatus>("status", given)?.into_iter().collect(),
    };
    let filter = crate::store::IssueFilter {
        statuses,
        severity: named::<Severity>("severity", q.severity.as_deref())?,
        runbook: q.runbook,
        older_than: None,
        limit: q.limit.unwrap_or(500).clamp(1, 10_000),
    };
    Ok(Json(
        serde_json::json!({ "issues": app.store.list_issues(&filter).await? }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    note: Option<String>,
}

async fn ack_issue(
    State(app): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    actions::ack_issue(&app, &key).await?;
    Ok(Json(
        serde_json::json!({ "key": key, "status": "acknowledged" }),
    ))
}

async fn resolve_issue(
    State(app): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: Option<Json<ResolveBody>>,
) -> Result<Json<serde_json::Value>, Problem> {
    let note = body.and_then(|b| b.0.note);
    actions::resolve_issue(&app, &key, note.as_deref()).await?;
    Ok(Json(
        serde_json::json!({ "key": key, "status": "resolved" }),
    ))
}

/// A query parameter naming a stored status or kind; unknown text is a 400
/// that lists the names.
fn named<T: StoredName>(param: &str, given: Option<&str>) -> Result<Option<T>, Problem> {
    given
        .map(|s| T::named(param, s).map_err(Problem::bad_request))
        .transpose()
}
