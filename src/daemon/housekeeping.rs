//! Housekeeping, once a minute: retention (every 6 hours) and the dead-man
//! switch of `expect: { success_within }` (by one daemon when several share
//! the database), and a look at the whole queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use super::Parts;
use crate::store::Severity;

/// The dead-man switch of `expect: { success_within }`: an issue (and a log
/// line) when a runbook has not succeeded in time, resolved once it has.
async fn dead_man(p: &Parts, rb: &crate::runbook::Runbook, overdue: bool, announce: bool) {
    let key = format!("expect:{}", rb.name);
    let within = crate::duration::spec(rb.success_within.unwrap_or_default());
    let now = crate::clock::now();
    if overdue {
        if announce {
            tracing::error!(runbook = %rb.name, within = %within, "no successful run within the expected time (expect.success_within)");
            let issue = crate::store::IssueOpen {
                runbook: rb.name.clone(),
                key,
                title: format!("{} has not succeeded in {within}", rb.name),
                severity: Severity::High,
                details: Some(format!(
                    "expect.success_within is {within}; see `runbookd runs --runbook {}`",
                    rb.name
                )),
                link: None,
                at: now,
            };
            if let Err(e) = p.store.open_issue(None, &issue).await {
                tracing::error!(error = %e, "could not open the dead-man issue");
            }
        }
    } else if let Ok(true) = p
        .store
        .resolve_issue(None, &key, Some("a run succeeded"), now)
        .await
    {
        tracing::info!(runbook = %rb.name, "succeeded again; the dead-man issue is resolved");
    }
}

/// Retention, the dead-man switch, and a periodic look at the queue.
pub(super) async fn run(p: Arc<Parts>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut last_prune: Option<DateTime<Utc>> = None;
    let mut warned: HashMap<String, DateTime<Utc>> = HashMap::new();
    let started = crate::clock::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        p.dispatcher.pump_all().await;
        if !leads(&p).await {
            continue;
        }
        let now = crate::clock::now();
        if last_prune.is_none_or(|t| now - t > TimeDelta::hours(6)) {
            last_prune = Some(now);
            prune(&p, now).await;
        }
        dead_men(&p, started, &mut warned).await;
    }
}

/// Whether this daemon does the housekeeping now: with several daemons on
/// one database, one of them does (the others take over within a few
/// minutes of its stopping); alone, it always does.
async fn leads(p: &Parts) -> bool {
    let owner = p.dispatcher.executor().owner();
    let until = crate::clock::now() + TimeDelta::seconds(150);
    match p.store.lead_housekeeping(owner, until).await {
        Ok(leads) => leads,
        Err(e) => {
            tracing::error!(error = %e, "could not tell which daemon does the housekeeping");
            false
        }
    }
}

/// Delete the runs older than the retention period.
async fn prune(p: &Parts, now: DateTime<Utc>) {
    let cutoff =
        crate::store::prune_cutoff(now, p.config.retention).unwrap_or(now - TimeDelta::days(90));
    match p.store.prune(cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(runs = n, "pruned runs older than the retention period"),
        Err(e) => tracing::error!(error = %e, "could not prune old runs"),
    }
}

/// Check every runbook with `expect: { success_within }` against its last
/// success (since the daemon started, when it never succeeded); `warned`
/// keeps when each overdue one was last announced.
async fn dead_men(p: &Parts, started: DateTime<Utc>, warned: &mut HashMap<String, DateTime<Utc>>) {
    let runbooks = p.registry.read().expect("registry lock").all();
    let watched: Vec<_> = runbooks
        .iter()
        .filter(|r| r.enabled)
        .filter_map(|rb| {
            Some((
                rb,
                rb.success_within
                    .and_then(|d| TimeDelta::from_std(d).ok())?,
            ))
        })
        .collect();
    if watched.is_empty() {
        return;
    }
    let names: Vec<String> = watched.iter().map(|(rb, _)| rb.name.clone()).collect();
    let last = match p.store.last_runs(&names).await {
        Ok(last) => last,
        Err(e) => return tracing::error!(error = %e, "could not read the last runs"),
    };
    let now = crate::clock::now();
    for (rb, within) in watched {
        let since = last
            .get(&rb.name)
            .and_then(|l| l.last_success)
            .unwrap_or(started);
        let overdue = now - since > within;
        let announce = warned.get(&rb.name).is_none_or(|w| now - *w > within);
        dead_man(p, rb, overdue, announce).await;
        if overdue && announce {
            warned.insert(rb.name.clone(), now);
        }
    }
}
