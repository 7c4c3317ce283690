//! `runbookd runs`: recorded runs, newest first.

use super::{Env, Exit, Outcome};
use crate::cli::RunsArgs;
use crate::output::{Table, elapsed, local_time};
use crate::store::{Access, RunFilter, RunStatus};

pub async fn run(env: &Env, args: RunsArgs) -> Outcome {
    let status = super::filter::<RunStatus>("status", args.status.as_deref())?;
    let store = crate::store::open(&env.config.database, Access::Read).await?;
    let filter = RunFilter {
        runbook: args.runbook,
        status,
        before: args.before,
        since: None,
        limit: args.limit.clamp(1, 1000),
    };
    let runs = store.list_runs(&filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs).expect("json"));
        return Ok(Exit::Ok);
    }
    if runs.is_empty() {
        println!("no runs match");
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(vec![
        "ID", "STATUS", "TRIGGER", "STARTED", "TOOK", "RUNBOOK",
    ]);
    for r in &runs {
        let when = r.started_at.or(r.scheduled_at).unwrap_or(r.created_at);
        table.row(vec![
            r.id.to_string(),
            r.status.to_string(),
            r.trigger_kind.to_string(),
            local_time(when),
            r.started_at
                .map(|s| elapsed(s, r.finished_at))
                .unwrap_or_else(|| "-".into()),
            r.runbook.clone(),
        ]);
    }
    print!("{}", table.render(80));
    if runs.len() as u32 == filter.limit
        && let Some(last) = runs.last()
    {
        println!("more: runbookd runs --before {}", last.id);
    }
    Ok(Exit::Ok)
}
