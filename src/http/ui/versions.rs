//! The versions of a runbook that ran, and a diff between any two: what
//! changed in its YAML and the scripts it imports.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};

use super::guard::Viewer;
use super::{Page, Ui, view};
use crate::http::problem::Problem;
use crate::store::{RunFilter, VersionRow};

/// How many of a runbook's latest runs are read to find its versions.
const RUNS_READ: u32 = 500;

/// A version as the runbook page lists it.
#[derive(Serialize)]
pub struct VersionView {
    pub hash: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The versions that ran among the runbook's latest runs, newest first.
pub async fn versions_of(ui: &Ui, runbook: &str) -> Result<Vec<VersionView>, Problem> {
    let runs = ui
        .app
        .store
        .list_runs(&RunFilter {
            runbook: Some(runbook.to_string()),
            limit: RUNS_READ,
            ..Default::default()
        })
        .await?;
    let mut seen: Vec<String> = Vec::new();
    for r in runs {
        if !seen.contains(&r.version_hash) {
            seen.push(r.version_hash);
        }
    }
    let mut out = Vec::new();
    for hash in seen {
        if let Some(v) = ui.app.store.version(&hash).await? {
            out.push(VersionView {
                hash: v.hash,
                created_at: v.created_at,
            });
        }
    }
    Ok(out)
}

/// A version's text as one document: the YAML, then each script it imports.
fn text_of(v: &VersionRow) -> String {
    let mut out = v.yaml.clone();
    for (name, text) in &v.scripts {
        out.push_str(&format!("\n# ---- {name} ----\n{text}"));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[derive(Deserialize)]
pub struct DiffQuery {
    from: String,
    to: String,
}

async fn version(ui: &Ui, runbook: &str, hash: &str) -> Result<VersionRow, Problem> {
    ui.app
        .store
        .version(hash)
        .await?
        .filter(|v| v.runbook == runbook)
        .ok_or_else(|| Problem::not_found(format!("runbook {runbook} has no version {hash}")))
}

pub async fn diff(
    State(ui): State<Arc<Ui>>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Page {
    let from = version(&ui, &name, &q.from).await?;
    let to = version(&ui, &name, &q.to).await?;
    let (a, b) = (text_of(&from), text_of(&to));
    let diff = similar::TextDiff::from_lines(&a, &b);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&q.from[..12.min(q.from.len())], &q.to[..12.min(q.to.len())])
        .to_string();
    let lines: Vec<(&str, &str)> = text
        .lines()
        .map(|l| {
            let kind = match l.chars().next() {
                Some('+') => "add",
                Some('-') => "del",
                Some('@') => "hunk",
                _ => "same",
            };
            (kind, l)
        })
        .collect();
    Ok(view::render(
        "diff.html",
        minijinja::context! {
            nav => "overview", viewer => Serde(viewer), runbook => name,
            from => Serde(VersionView { hash: from.hash, created_at: from.created_at }),
            to => Serde(VersionView { hash: to.hash, created_at: to.created_at }),
            lines => Serde(lines),
        },
    ))
}
