//! `runbookd runs`: recorded runs, newest first.

use super::{Env, Exit, Failure, Outcome};
use crate::cli::RunsArgs;
use crate::output::{Table, elapsed, local_time};
use crate::store::{Access, RunFilter, RunStatus, StoreError};

pub async fn run(env: &Env, args: RunsArgs) -> Outcome {
    let status = super::filter::<RunStatus>("status", args.status.as_deref())?;
    let store = match crate::store::open(&env.config.database, Access::Read).await {
        // A runbook name with a typo is the mistake to report first.
        Err(e @ StoreError::Missing(_)) => {
            if let Some(name) = &args.runbook {
                unknown_runbook(env, name)?;
            }
            return Err(e.into());
        }
        opened => opened?,
    };
    let filter = RunFilter {
        runbook: args.runbook,
        status,
        before: args.before,
        since: None,
        limit: args.limit.clamp(1, 1000),
    };
    let runs = store.list_runs(&filter).await?;
    if args.json
        && runs.is_empty()
        && let Some(name) = &filter.runbook
    {
        unknown_runbook(env, name)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs).expect("json"));
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        if let Some(name) = &filter.runbook {
            unknown_runbook(env, name)?;
        }
        println!("no runs match");
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(vec![
        "ID", "STATUS", "TRIGGER", "STARTED", "TOOK", "RUNBOOK",
    ])
    .shrink_first(&["RUNBOOK"]);
    for r in &runs {
        let when = r.started_at.or(r.scheduled_at).unwrap_or(r.created_at);
        let status = if r.dry_run {
            format!("{} (dry run)", r.status)
        } else {
            r.status.to_string()
        };
        table.row(vec![
            r.id.to_string(),
            status,
            r.trigger_kind.to_string(),
            local_time(when),
            r.started_at
                .map(|s| elapsed(s, r.finished_at))
                .unwrap_or_else(|| "-".into()),
            r.runbook.clone(),
        ]);
    }
    print!("{}", table.render(crate::output::width()));
    if runs.len() as u32 == filter.limit
        && let Some(last) = runs.last()
    {
        println!("more: runbookd runs --before {}", last.id);
    }
    Ok(Exit::Ok)
}

/// A runbook name with no runs that no runbook file has either is a typo:
/// say so (exit 2) rather than "no runs match".
fn unknown_runbook(env: &Env, name: &str) -> Result<(), Failure> {
    let sandbox = crate::script::Sandbox::new(crate::script::Limits::default());
    let loaded = env.load_runbooks(sandbox);
    let names: Vec<&str> = (loaded.runbooks.iter().map(|r| r.name.as_str()))
        .chain(loaded.failed.iter().map(|(_, n)| n.as_str()))
        .collect();
    if names.contains(&name) {
        return Ok(());
    }
    let hint = crate::runbook::did_you_mean(name, names.iter().copied())
        .unwrap_or_else(|| "`runbookd runbooks` lists the runbooks".into());
    Err(Failure::new(Exit::Usage, format!("there is no runbook named {name}")).hint(hint))
}
