//! `runbookd deliveries`: webhook deliveries and what became of them.

use super::{Env, Exit, Outcome};
use crate::cli::DeliveriesArgs;
use crate::output::{Table, local_time};
use crate::store::Access;

pub async fn run(env: &Env, args: DeliveriesArgs) -> Outcome {
    let store = crate::store::open(&env.config.database, Access::Read).await?;
    let rows = store
        .list_deliveries(
            args.runbook.as_deref(),
            args.before,
            args.limit.clamp(1, 1000),
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        println!("no deliveries match");
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(vec![
        "ID", "RECEIVED", "OUTCOME", "RUN", "RUNBOOK", "DETAIL",
    ])
    .shrink_first(&["DETAIL", "RUNBOOK"]);
    for d in &rows {
        let run = match (d.run_id, d.run_status) {
            (Some(id), Some(st)) => format!("{id} {st}"),
            (Some(id), None) => id.to_string(),
            _ => "-".into(),
        };
        let detail = match (d.duplicate_of, &d.detail) {
            (Some(orig), _) => format!("repeats delivery {orig}"),
            (None, Some(t)) => t.clone(),
            (None, None) => d
                .dedup_key
                .clone()
                .map(|k| format!("id {k}"))
                .unwrap_or_default(),
        };
        table.row(vec![
            d.id.to_string(),
            local_time(d.received_at),
            d.outcome.to_string(),
            run,
            d.runbook.clone(),
            detail,
        ]);
    }
    print!("{}", table.render(crate::output::width()));
    if rows.len() as u32 == args.limit.clamp(1, 1000)
        && let Some(last) = rows.last()
    {
        println!("more: runbookd deliveries --before {}", last.id);
    }
    Ok(Exit::Ok)
}
