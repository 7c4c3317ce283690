//! `runbookd show RUN_ID`: one run in full.

use super::{Env, Exit, Failure, Outcome};
use crate::cli::ShowArgs;
use crate::output::{clock_time, elapsed, local_time, printable, printable_lines};
use crate::store::{Access, RunDetail};

pub async fn run(env: &Env, args: ShowArgs) -> Outcome {
    let missing = || {
        Failure::new(Exit::Failed, format!("there is no run {}", args.run_id))
            .hint("`runbookd runs` lists the recorded runs")
    };
    let store = crate::store::open(&env.config.database, Access::Read).await?;
    let detail = store.run_detail(args.run_id).await?.ok_or_else(missing)?;
    if args.json {
        let version = store.version(&detail.run.version_hash).await?;
        let mut v = serde_json::to_value(&detail).expect("json");
        v["version"] = serde_json::to_value(version).expect("json");
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print!("{}", render(&detail));
    }
    Ok(Exit::Ok)
}

fn render(d: &RunDetail) -> String {
    let r = &d.run;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<10} {}\n", printable(&v)));
    line("Run", r.id.to_string());
    line(
        "Runbook",
        format!(
            "{} (version {})",
            r.runbook,
            &r.version_hash[..12.min(r.version_hash.len())]
        ),
    );
    line(
        "Status",
        if r.dry_run {
            format!("{} (dry run: writes were planned, not made)", r.status)
        } else {
            r.status.to_string()
        },
    );
    let trigger = match (&r.trigger_key, r.scheduled_at) {
        (Some(k), Some(at)) => format!("{k}, slot {}", local_time(at)),
        _ => r.trigger_kind.to_string(),
    };
    line("Trigger", trigger);
    if r.params.as_object().is_some_and(|m| !m.is_empty()) {
        line("Params", r.params.to_string());
    }
    line("Created", local_time(r.created_at));
    if let Some(s) = r.started_at {
        line("Started", local_time(s));
        line("Took", elapsed(s, r.finished_at));
    }
    if let Some(e) = &r.error {
        line("Error", e.clone());
    }
    for a in &d.attempts {
        out.push_str(&format!(
            "\nAttempt {}: {} ({})\n",
            a.attempt,
            a.status,
            elapsed(a.started_at, a.finished_at)
        ));
        for s in d.steps.iter().filter(|s| s.attempt_id == a.id) {
            let detail = s
                .error
                .as_ref()
                .map(|e| format!(": {}", printable(e)))
                .unwrap_or_default();
            out.push_str(&format!(
                "  step {:<16} {:<10} {:>8}{detail}\n",
                s.name,
                s.status.to_string(),
                elapsed(s.started_at, Some(s.finished_at))
            ));
        }
        let logs: Vec<_> = d.logs.iter().filter(|l| l.attempt == a.attempt).collect();
        if !logs.is_empty() {
            out.push_str("  log:\n");
            for l in logs {
                let step = l
                    .step
                    .as_deref()
                    .map(|s| format!(" [{s}]"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "    {} {:<5}{step} {}\n",
                    clock_time(l.at),
                    l.level.to_uppercase(),
                    printable(&l.message)
                ));
            }
        }
    }
    if let Some(o) = r.output.as_ref().filter(|o| !o.is_null()) {
        out.push_str(&format!(
            "\nOutput\n{}\n",
            printable_lines(&serde_json::to_string_pretty(o).expect("json"))
        ));
    }
    out
}
