//! The overview (every runbook at a glance, load errors, open issues, the
//! queue, the daemon) and a runbook's own page with its "Run now" form.

use std::sync::Arc;

use axum::Extension;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use chrono::{DateTime, Utc};
use serde::Serialize;

use minijinja::value::Serde;

use super::guard::Viewer;
use super::{Page, Ui, view};
use crate::http::actions;
use crate::http::problem::Problem;
use crate::runbook::Trigger;
use crate::schedule::slots::{Schedule, upcoming};
use crate::schedule::summary::RunbookSummary;
use crate::store::RunFilter;

pub async fn page(State(ui): State<Arc<Ui>>, Extension(viewer): Extension<Viewer>) -> Page {
    let app = &ui.app;
    let (all, errors) = {
        let reg = app.registry.read().expect("registry lock");
        let errors: Vec<String> = reg.errors.iter().map(ToString::to_string).collect();
        (reg.all(), errors)
    };
    let names: Vec<String> = all.iter().map(|rb| rb.name.clone()).collect();
    let mut last = crate::schedule::summary::last_runs(app.store.as_ref(), &names).await?;
    let now = crate::clock::now();
    let mut rows: Vec<RunbookSummary> = all
        .iter()
        .map(|rb| RunbookSummary::new(rb, last.remove(&rb.name).unwrap_or_default(), now))
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let issues: Vec<(String, i64)> = app
        .store
        .open_issue_counts()
        .await?
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    let uptime = crate::duration::human(std::time::Duration::from_secs(
        ui.started.elapsed().as_secs().max(1),
    ));
    Ok(view::render(
        "overview.html",
        minijinja::context! {
            nav => "overview", viewer => Serde(viewer), runbooks => Serde(rows), errors => Serde(errors),
            issues => Serde(issues), queue => app.store.queue_depth().await?,
            version => Serde(env!("CARGO_PKG_VERSION")), uptime => uptime,
            timezone => app.timezone.name(), database => &app.database,
        },
    ))
}

/// A trigger on the runbook page, with its coming slots in its own zone.
#[derive(Serialize)]
struct TriggerView {
    describe: String,
    /// `2026-03-29 03:00 CEST (01:00 UTC)`: a DST change shows as a new zone name.
    upcoming: Vec<String>,
}

fn trigger_view(t: &Trigger, now: DateTime<Utc>) -> TriggerView {
    let zone = match t {
        Trigger::Cron { timezone, .. } => *timezone,
        _ => chrono_tz::Tz::UTC,
    };
    let upcoming = Schedule::of(t)
        .map(|s| upcoming(&s, now, 10))
        .unwrap_or_default()
        .into_iter()
        .map(|at| {
            let local = at.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z");
            if zone == chrono_tz::Tz::UTC {
                local.to_string()
            } else {
                format!("{local} ({} UTC)", at.format("%H:%M"))
            }
        })
        .collect();
    TriggerView {
        describe: t.describe(),
        upcoming,
    }
}

#[derive(Serialize)]
struct ParamView {
    name: String,
    kind: &'static str,
    default: Option<String>,
    required: bool,
    description: Option<String>,
}

pub async fn runbook(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
) -> Page {
    let app = &ui.app;
    let rb = actions::find(app, &name)?;
    let now = crate::clock::now();
    let last = app
        .store
        .last_runs(std::slice::from_ref(&rb.name))
        .await?
        .remove(&rb.name)
        .unwrap_or_default();
    let runs = app
        .store
        .list_runs(&RunFilter {
            runbook: Some(rb.name.clone()),
            limit: 20,
            ..Default::default()
        })
        .await?;
    let params: Vec<ParamView> = rb
        .params
        .iter()
        .map(|p| ParamView {
            name: p.name.clone(),
            kind: p.kind.as_str(),
            default: p.default.as_ref().map(|d| match d {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            required: p.required && p.default.is_none(),
            description: p.description.clone(),
        })
        .collect();
    Ok(view::render(
        "runbook.html",
        minijinja::context! {
            nav => "overview", viewer => Serde(viewer),
            runbook => Serde(RunbookSummary::new(&rb, last, now)),
            path => rb.path.display().to_string(),
            version => Serde(rb.version.hash.clone()),
            triggers => Serde(rb.triggers.iter().map(|t| trigger_view(t, now)).collect::<Vec<_>>()),
            params => Serde(params), runs => Serde(runs),
            versions => Serde(super::versions::versions_of(&ui, &rb.name).await?),
        },
    ))
}

/// "Run now": the typed params as text (as the CLI's `-p name=value` reads
/// them; empty fields take their defaults), and `dry run`.
pub async fn run_now(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Page {
    let app = &ui.app;
    let rb = actions::find(app, &name)?;
    let given: Vec<(String, String)> = fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("p.")?.to_string(), v.clone())))
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let dry_run = fields.iter().any(|(k, v)| k == "dry_run" && v == "on");
    let params =
        crate::run::bind_cli_params(&rb, &given).map_err(|p| Problem::bad_request(p.join("; ")))?;
    let id = actions::start_manual(app, rb, params, dry_run).await?;
    Ok(Redirect::to(&format!("/runs/{id}")).into_response())
}
