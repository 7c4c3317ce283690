//! What arrived and what went out: webhook deliveries (headers as recorded,
//! with credentials masked) and the email outbox with per-recipient results.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Query, State};
use serde::Deserialize;

use minijinja::value::Serde;

use super::guard::Viewer;
use super::{Page, Ui, view};
use crate::http::problem::Problem;
use crate::store::{EmailStatus, StoredName};

const PAGE: u32 = 50;

#[derive(Deserialize, Default)]
pub struct DeliveriesQuery {
    runbook: Option<String>,
    cursor: Option<i64>,
}

pub async fn deliveries(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<DeliveriesQuery>,
) -> Page {
    let runbook = q.runbook.filter(|r| !r.is_empty());
    let rows = ui
        .app
        .store
        .list_deliveries(runbook.as_deref(), q.cursor, PAGE)
        .await?;
    let next = (rows.len() as u32 == PAGE)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(view::render(
        "deliveries.html",
        minijinja::context! {
            nav => "deliveries", viewer => Serde(viewer), deliveries => Serde(rows), next => Serde(next),
            runbook => Serde(runbook.unwrap_or_default()),
        },
    ))
}

#[derive(Deserialize, Default)]
pub struct EmailsQuery {
    status: Option<String>,
}

pub async fn emails(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<EmailsQuery>,
) -> Page {
    let status = match q.status.as_deref().unwrap_or("") {
        "" => None,
        s => Some(EmailStatus::named("status", s).map_err(Problem::bad_request)?),
    };
    let rows = ui.app.store.list_emails(status, 200).await?;
    Ok(view::render(
        "emails.html",
        minijinja::context! {
            nav => "emails", viewer => Serde(viewer), emails => Serde(rows),
            status => status.map(|s| s.as_str()).unwrap_or_default(),
            statuses => Serde(EmailStatus::names()),
        },
    ))
}
