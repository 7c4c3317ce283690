//! The runs list (filters, cursor paging) and one run in full: attempts,
//! steps, log lines, output, what fired it and the version text that ran,
//! with a cancel button while it is active.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use minijinja::value::Serde;

use super::guard::Viewer;
use super::{Page, Ui, view};
use crate::http::actions;
use crate::http::problem::Problem;
use crate::store::{
    DeliveryRow, EmailRow, IssueFilter, IssueStatus, RunFilter, RunRow, RunStatus, StoredName,
    TriggerKind,
};
use strum::VariantArray;

/// Runs on one page of the list.
const PAGE: u32 = 50;
/// With a trigger filter (which the store does not filter on), the most runs
/// read to fill one page; the "older" link goes on from where it stopped.
const SCAN: usize = 5000;

#[derive(Deserialize, Default)]
pub struct RunsQuery {
    runbook: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    /// `YYYY-MM-DD`: runs created on or after that day (UTC).
    since: Option<String>,
    cursor: Option<i64>,
}

fn since_day(given: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, Problem> {
    given
        .filter(|s| !s.is_empty())
        .map(|s| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
                .map_err(|_| {
                    Problem::bad_request(format!("since \"{s}\" is not a day (YYYY-MM-DD)"))
                })
        })
        .transpose()
}

/// An empty select (`?status=`) means "any".
fn chosen<T: StoredName>(param: &str, given: Option<&str>) -> Result<Option<T>, Problem> {
    given
        .filter(|s| !s.is_empty())
        .map(|s| T::named(param, s).map_err(Problem::bad_request))
        .transpose()
}

/// One page of runs, newest first, and the cursor of the next (older) page.
async fn page_of_runs(
    ui: &Ui,
    filter: RunFilter,
    trigger: Option<TriggerKind>,
) -> Result<(Vec<RunRow>, Option<i64>), Problem> {
    let store = &ui.app.store;
    let Some(trigger) = trigger else {
        let runs = store.list_runs(&filter).await?;
        let next = (runs.len() as u32 == filter.limit)
            .then(|| runs.last().map(|r| r.id))
            .flatten();
        return Ok((runs, next));
    };
    let mut out = Vec::new();
    let mut filter = RunFilter {
        limit: 200,
        ..filter
    };
    let mut scanned = 0;
    loop {
        let batch = store.list_runs(&filter).await?;
        let full = batch.len() as u32 == filter.limit;
        for run in batch {
            scanned += 1;
            filter.before = Some(run.id);
            if run.trigger_kind == trigger {
                out.push(run);
                if out.len() as u32 == PAGE {
                    return Ok((out, filter.before));
                }
            }
        }
        if !full {
            return Ok((out, None));
        }
        if scanned >= SCAN {
            return Ok((out, filter.before));
        }
    }
}

pub async fn list(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<RunsQuery>,
) -> Page {
    let status = chosen::<RunStatus>("status", q.status.as_deref())?;
    let trigger = chosen::<TriggerKind>("trigger", q.trigger.as_deref())?;
    let runbook = q.runbook.clone().filter(|s| !s.is_empty());
    let filter = RunFilter {
        runbook: runbook.clone(),
        status,
        before: q.cursor,
        since: since_day(q.since.as_deref())?,
        limit: PAGE,
    };
    let (runs, next) = page_of_runs(&ui, filter, trigger).await?;
    let mut names: Vec<String> = ui
        .app
        .registry
        .read()
        .expect("registry lock")
        .all()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    names.sort();
    Ok(view::render(
        "runs.html",
        minijinja::context! {
            nav => "runs", viewer => Serde(viewer), runs => Serde(runs), next => Serde(next),
            runbooks => Serde(names), statuses => Serde(RunStatus::names()),
            triggers => Serde(TriggerKind::names()),
            runbook => Serde(runbook.unwrap_or_default()),
            status => status.map(|s| s.as_str()).unwrap_or_default(),
            trigger => trigger.map(|t| t.as_str()).unwrap_or_default(),
            since => q.since.unwrap_or_default(),
        },
    ))
}

/// The emails a run queued (the outbox is listed newest first, unfiltered
/// by run, so the recent part of it is searched).
async fn emails_of(ui: &Ui, run: &RunRow) -> Result<Vec<EmailRow>, Problem> {
    let all = ui.app.store.list_emails(None, 500).await?;
    Ok(all
        .into_iter()
        .filter(|e| e.run_id == Some(run.id))
        .collect())
}

/// The webhook delivery that made a run (searched among its runbook's
/// latest deliveries).
async fn delivery_of(ui: &Ui, run: &RunRow) -> Result<Option<DeliveryRow>, Problem> {
    if run.trigger_kind != TriggerKind::Webhook {
        return Ok(None);
    }
    let recent = ui
        .app
        .store
        .list_deliveries(Some(&run.runbook), None, 500)
        .await?;
    Ok(recent.into_iter().find(|d| d.run_id == Some(run.id)))
}

pub async fn detail(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<i64>,
) -> Page {
    let store = &ui.app.store;
    let d = store
        .run_detail(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("there is no run {id}")))?;
    let version = store.version(&d.run.version_hash).await?;
    let issues = store
        .list_issues(&IssueFilter {
            statuses: IssueStatus::VARIANTS.to_vec(),
            runbook: Some(d.run.runbook.clone()),
            limit: 20,
            ..Default::default()
        })
        .await?;
    let emails = emails_of(&ui, &d.run).await?;
    let delivery = delivery_of(&ui, &d.run).await?;
    let active = d.run.status.is_active();
    let trigger = (!d.run.trigger_data.as_object().is_none_or(|m| m.is_empty()))
        .then(|| serde_json::to_string_pretty(&d.run.trigger_data).unwrap_or_default());
    Ok(view::render(
        "run.html",
        minijinja::context! {
            nav => "runs", viewer => Serde(viewer), run => Serde(d.run), attempts => Serde(d.attempts),
            steps => Serde(d.steps), logs => Serde(d.logs), version => Serde(version), active => Serde(active),
            trigger_data => Serde(trigger), issues => Serde(issues), emails => Serde(emails), delivery => Serde(delivery),
        },
    ))
}

pub async fn cancel(State(ui): State<Arc<Ui>>, Path(id): Path<i64>) -> Page {
    actions::cancel(&ui.app, id).await?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}
