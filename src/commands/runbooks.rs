//! `runbookd runbooks`: each runbook with its triggers, next fire time, last
//! result and health, and the files that did not load; with a name, that
//! runbook's effective settings (`runbook.rs`).

use std::sync::Arc;

use chrono::Utc;

use super::{Env, Exit, Outcome};
use crate::cli::RunbooksArgs;
use crate::output::{Table, local_time};
use crate::schedule::summary::{Health, RunbookSummary};
use crate::script::Sandbox;
use crate::store::{Access, StoreError};

pub async fn run(env: &Env, sandbox: Arc<Sandbox>, args: RunbooksArgs) -> Outcome {
    let loaded = env.load_runbooks(sandbox);
    if let Some(name) = &args.name {
        return super::runbook::show(&loaded, name, args.json, crate::output::width());
    }
    // Without a database yet, the runbooks are listed without history.
    let store = match crate::store::open(&env.config.database, Access::Read).await {
        Ok(store) => Some(store),
        Err(StoreError::Missing(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut runbooks = loaded.runbooks.clone();
    runbooks.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<String> = runbooks.iter().map(|r| r.name.clone()).collect();
    let mut lasts = match &store {
        Some(s) => crate::schedule::summary::last_runs(s.as_ref(), &names).await?,
        None => Default::default(),
    };
    for rb in &runbooks {
        let s = RunbookSummary::new(rb, lasts.remove(&rb.name).unwrap_or_default(), now);
        // The terminal shows the last run's status beside it, so only these.
        let mut health = match s.health {
            Health::Disabled => "disabled".to_string(),
            Health::Overdue => format!("overdue: {}", s.health_note.clone().unwrap_or_default()),
            _ => "ok".to_string(),
        };
        if let Some(skew) = s.version_skew_note {
            health = if health == "ok" {
                skew
            } else {
                format!("{health}; {skew}")
            };
        }
        rows.push((rb.clone(), s.next_fire, s.last, health));
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(rb, next, last, health)| {
                serde_json::json!({
                    "name": rb.name, "description": rb.description, "enabled": rb.enabled,
                    "triggers": rb.triggers.iter().map(|t| t.describe()).collect::<Vec<_>>(),
                    "next": next, "health": health, "version": rb.version.hash,
                    "last": last.as_ref().map(|r| serde_json::json!({"id": r.id, "status": r.status, "at": r.finished_at.or(r.started_at).unwrap_or(r.created_at), "error": r.error})),
                })
            })
            .collect();
        let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"runbooks": v, "errors": errors}))
                .expect("json")
        );
        return Ok(if errors.is_empty() {
            Exit::Ok
        } else {
            Exit::Failed
        });
    }
    let mut table =
        Table::new(vec!["NAME", "NEXT", "LAST", "TRIGGERS"]).shrink_first(&["TRIGGERS", "LAST"]);
    for (rb, next, last, health) in &rows {
        let last = match last {
            None => "never ran".to_string(),
            Some(r) => format!("{} (run {})", r.status, r.id),
        };
        let last = if health == "ok" {
            last
        } else {
            format!("{last}; {health}")
        };
        let triggers = rb
            .triggers
            .iter()
            .map(|t| t.describe())
            .collect::<Vec<_>>()
            .join(", ");
        table.row(vec![
            rb.name.clone(),
            next.map(local_time).unwrap_or_else(|| "-".into()),
            last,
            triggers,
        ]);
    }
    if rows.is_empty() {
        println!("no runbooks loaded from {}", env.config.runbooks.display());
    } else {
        print!("{}", table.render(crate::output::width()));
    }
    for e in &loaded.errors {
        println!("failed: {}", crate::output::printable(&e.to_string()));
    }
    Ok(if loaded.errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
