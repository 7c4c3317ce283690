//! Issues by status, worst and oldest first; acknowledge and resolve (with a
//! note) through forms.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use serde::Deserialize;

use minijinja::value::Serde;

use super::guard::Viewer;
use super::{Page, Ui, view};
use crate::http::actions;
use crate::http::problem::Problem;
use crate::store::{IssueFilter, IssueStatus, Severity, StoredName};
use strum::VariantArray;

#[derive(Deserialize, Default)]
pub struct IssuesQuery {
    /// `open`, `acknowledged`, `resolved`, `all`; empty: the unresolved ones.
    status: Option<String>,
    severity: Option<String>,
    runbook: Option<String>,
}

pub async fn list(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<IssuesQuery>,
) -> Page {
    let status = q.status.as_deref().unwrap_or("");
    let statuses = match status {
        "" => IssueStatus::UNRESOLVED.to_vec(),
        "all" => IssueStatus::VARIANTS.to_vec(),
        s => vec![IssueStatus::named("status", s).map_err(Problem::bad_request)?],
    };
    let severity = match q.severity.as_deref().unwrap_or("") {
        "" => None,
        s => Some(Severity::named("severity", s).map_err(Problem::bad_request)?),
    };
    let runbook = q.runbook.filter(|r| !r.is_empty());
    let mut issues = ui
        .app
        .store
        .list_issues(&IssueFilter {
            statuses,
            severity,
            runbook: runbook.clone(),
            older_than: None,
            limit: 500,
        })
        .await?;
    issues.sort_by_key(|i| (i.severity, i.first_seen));
    Ok(view::render(
        "issues.html",
        minijinja::context! {
            nav => "issues", viewer => Serde(viewer), issues => Serde(issues),
            status => status, severity => severity.map(|s| s.as_str()).unwrap_or_default(),
            runbook => Serde(runbook.unwrap_or_default()),
            statuses => Serde(IssueStatus::names()), severities => Serde(Severity::names()),
        },
    ))
}

#[derive(Deserialize)]
pub struct IssueForm {
    key: String,
    note: Option<String>,
}

pub async fn ack(State(ui): State<Arc<Ui>>, Form(f): Form<IssueForm>) -> Page {
    actions::ack_issue(&ui.app, &f.key).await?;
    Ok(Redirect::to("/issues").into_response())
}

pub async fn resolve(State(ui): State<Arc<Ui>>, Form(f): Form<IssueForm>) -> Page {
    let note = f.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    actions::resolve_issue(&ui.app, &f.key, note).await?;
    Ok(Redirect::to("/issues?status=resolved").into_response())
}
