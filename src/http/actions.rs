//! What a person can do to the daemon over HTTP, shared by the API and the
//! web UI so both answer the same way: start a runbook by hand, cancel a run,
//! acknowledge or resolve an issue. Each returns a [`Problem`] that says why
//! it was refused; the caller decides how to show it (JSON or a page).

use std::sync::Arc;

use axum::http::StatusCode;

use super::AppState;
use super::problem::Problem;
use crate::run::{RunRequest, TriggerInfo};
use crate::runbook::Runbook;
use crate::store::{RunEnd, RunId, RunStatus, StoreError};

/// The runbook named `name`, or a 404 that says there is none.
pub fn find(app: &AppState, name: &str) -> Result<Arc<Runbook>, Problem> {
    app.registry
        .read()
        .expect("registry lock")
        .get(name)
        .ok_or_else(|| Problem::not_found(format!("there is no runbook named \"{name}\"")))
}

/// Record a manual run of `name` with already-bound params and wake the
/// dispatcher.
///
/// Fails with 503 while shutting down, 404 for an unknown runbook, 409 when
/// it is disabled or `concurrency: forbid` refuses a second run.
pub async fn start_manual(
    app: &AppState,
    rb: Arc<Runbook>,
    params: serde_json::Map<String, serde_json::Value>,
    dry_run: bool,
) -> Result<RunId, Problem> {
    if app.closing.is_cancelled() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "runbookd is shutting down",
        )
        .retry(5));
    }
    if !rb.enabled {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("runbook {} is disabled", rb.name),
        ));
    }
    let mut req = RunRequest::new(rb, TriggerInfo::manual(), params, &app.closing);
    req.dry_run = dry_run;
    let id = app.intake.submit(&req).await.map_err(|e| match e {
        StoreError::Conflict(m) => Problem::new(StatusCode::CONFLICT, "Conflict", m),
        other => Problem::from(other),
    })?;
    app.dispatcher.pump().await;
    Ok(id)
}

/// What asking to cancel a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued and is now `cancelled`.
    Now,
    /// It is running: its executor was told to stop.
    Stopping,
}

/// Cancel a queued or running run.
///
/// Fails with 404 for an unknown run and 409 for one that has ended.
pub async fn cancel(app: &AppState, id: RunId) -> Result<Cancelled, Problem> {
    let detail = app
        .store
        .run_detail(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no run {id}")))?;
    match detail.run.status {
        RunStatus::Running if app.dispatcher.cancel(id) => Ok(Cancelled::Stopping),
        // Another process runs it: it sees the request at its next heartbeat.
        RunStatus::Running if app.store.request_cancel(None, id).await? == 1 => {
            Ok(Cancelled::Stopping)
        }
        RunStatus::Queued => {
            let end = RunEnd {
                status: RunStatus::Cancelled,
                output: None,
                error: Some("cancelled before it started".into()),
                at: crate::clock::now(),
            };
            if app.store.end_waiting(id, RunStatus::Queued, &end).await? {
                Ok(Cancelled::Now)
            } else if app.dispatcher.cancel(id) {
                // It started meanwhile.
                Ok(Cancelled::Stopping)
            } else {
                Err(Problem::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("run {id} is no longer queued"),
                ))
            }
        }
        other => Err(Problem::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("run {id} is {other}; only queued or running runs can be cancelled"),
        )),
    }
}

/// Acknowledge an open issue.
///
/// Fails with 404 for an unknown key and 409 when it is not open.
pub async fn ack_issue(app: &AppState, key: &str) -> Result<(), Problem> {
    if app.store.ack_issue(key, crate::clock::now()).await? {
        return Ok(());
    }
    Err(issue_state(app, key).await)
}

/// Resolve an open or acknowledged issue, with an optional note.
///
/// Fails with 404 for an unknown key and 409 when it is already resolved.
pub async fn resolve_issue(app: &AppState, key: &str, note: Option<&str>) -> Result<(), Problem> {
    if app
        .store
        .resolve_issue(None, key, note, crate::clock::now())
        .await?
    {
        return Ok(());
    }
    Err(issue_state(app, key).await)
}

async fn issue_state(app: &AppState, key: &str) -> Problem {
    match app.store.issue(key).await {
        Ok(Some(i)) => Problem::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("issue {key} is {}", i.status),
        ),
        Ok(None) => Problem::not_found(format!("there is no issue {key}")),
        Err(e) => Problem::from(e),
    }
}
