//! A runbook as the listings show it (`runbookd runbooks`, the API's
//! runbooks, the UI's overview): its triggers, when it fires next, its last
//! run and whether it is healthy. One view model, so the three never judge a
//! runbook differently.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::slots::next_fire;
use crate::runbook::{Runbook, Trigger};
use crate::store::{LastRun, LoadedVersion, RunStatus, RunSummary, Store};

/// A daemon that said which versions it runs longer ago than this is not
/// counted (each says so every 5 s).
const SEEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Each runbook's latest run, when it last succeeded, and the versions the
/// daemons sharing the store run when they differ.
///
/// Fails when the store cannot be read.
pub async fn last_runs(
    store: &dyn Store,
    names: &[String],
) -> crate::store::Result<HashMap<String, LastRun>> {
    let mut lasts = store.last_runs(names).await?;
    // A listing still answers when the versions cannot be read.
    let skew = store.version_skew(SEEN_WITHIN).await.unwrap_or_default();
    for (name, versions) in skew {
        if let Some(last) = lasts.get_mut(&name) {
            last.versions = versions;
        }
    }
    Ok(lasts)
}

/// How a runbook is doing, worst reasons first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Health {
    /// The deployment's settings turned it off.
    Disabled,
    /// It has no run yet.
    NeverRan,
    /// No success within its `expect: { success_within }` (the dead-man switch).
    Overdue,
    /// Its latest run failed, timed out or was interrupted.
    Failing,
    Ok,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunbookSummary {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub triggers: Vec<String>,
    /// `None` when it is disabled or nothing schedules it.
    pub next_fire: Option<DateTime<Utc>>,
    pub last: Option<RunSummary>,
    pub last_success: Option<DateTime<Utc>>,
    pub health: Health,
    /// Why, when it is overdue (`no success in 1h`) or failing (the error).
    pub health_note: Option<String>,
    /// The versions daemons sharing the store run, when they differ (a
    /// rolling deploy, a reload that reached some hosts only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub version_skew: Vec<LoadedVersion>,
    /// The same in words: `daemons run 2 versions: 3f2a1b4c (2 daemons),
    /// 9c0d4e5f (1 daemon)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_skew_note: Option<String>,
}

impl RunbookSummary {
    pub fn new(rb: &Runbook, last: LastRun, now: DateTime<Utc>) -> Self {
        let (health, health_note) = health(rb, &last, now);
        RunbookSummary {
            name: rb.name.clone(),
            description: rb.description.clone(),
            enabled: rb.enabled,
            triggers: rb.triggers.iter().map(Trigger::describe).collect(),
            next_fire: next_fire(rb, now),
            last: last.run,
            last_success: last.last_success,
            health,
            health_note,
            version_skew_note: skew_note(&last.versions),
            version_skew: last.versions,
        }
    }
}

/// `daemons run 2 versions: 3f2a1b4c (2 daemons), 9c0d4e5f (1 daemon)`.
fn skew_note(versions: &[LoadedVersion]) -> Option<String> {
    if versions.is_empty() {
        return None;
    }
    let each: Vec<String> = (versions.iter())
        .map(|v| {
            let s = if v.daemons == 1 { "" } else { "s" };
            let short = &v.hash[..v.hash.len().min(8)];
            format!("{short} ({} daemon{s})", v.daemons)
        })
        .collect();
    Some(format!(
        "daemons run {} versions: {}",
        versions.len(),
        each.join(", ")
    ))
}

/// Overdue is judged as the daemon's dead-man check judges it: a runbook
/// that has run, with `success_within`, and no success in that time.
fn health(rb: &Runbook, last: &LastRun, now: DateTime<Utc>) -> (Health, Option<String>) {
    if !rb.enabled {
        return (Health::Disabled, None);
    }
    let Some(run) = &last.run else {
        return (Health::NeverRan, None);
    };
    let overdue = rb
        .success_within
        .and_then(|w| chrono::TimeDelta::from_std(w).ok())
        .is_some_and(|w| last.last_success.is_none_or(|ok| now - ok > w));
    if overdue {
        let within = crate::duration::spec(rb.success_within.unwrap_or_default());
        return (Health::Overdue, Some(format!("no success in {within}")));
    }
    match run.status {
        RunStatus::Failed | RunStatus::TimedOut | RunStatus::Interrupted | RunStatus::Abandoned => {
            (Health::Failing, run.error.clone())
        }
        _ => (Health::Ok, None),
    }
}
