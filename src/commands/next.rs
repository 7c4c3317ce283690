//! `runbookd next`: upcoming fire times of every schedule, in the trigger's
//! zone, locally and in UTC, so a DST change can be previewed.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Env, Exit, Failure, Outcome};
use crate::cli::NextArgs;
use crate::output::local_zone;
use crate::runbook::Trigger;
use crate::schedule::slots::{Schedule, upcoming};
use crate::script::Sandbox;

pub fn run(env: &Env, sandbox: Arc<Sandbox>, args: NextArgs) -> Outcome {
    let from = match &args.from {
        None => Utc::now(),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map_err(|_| {
                Failure::new(
                    Exit::Usage,
                    format!("--from \"{t}\" is not an RFC 3339 time"),
                )
                .hint("write it like 2026-03-08T00:00:00Z")
            })?
            .to_utc(),
    };
    let loaded = env.load_runbooks(sandbox);
    let mut runbooks: Vec<_> = loaded
        .runbooks
        .iter()
        .filter(|r| args.name.as_ref().is_none_or(|n| *n == r.name))
        .collect();
    runbooks.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(name) = &args.name
        && runbooks.is_empty()
    {
        let names: Vec<&str> = loaded.runbooks.iter().map(|r| r.name.as_str()).collect();
        let hint = crate::runbook::did_you_mean(name, names.iter().copied())
            .unwrap_or_else(|| "`runbookd runbooks` lists them".into());
        return Err(
            Failure::new(Exit::Usage, format!("there is no runbook named \"{name}\"")).hint(hint),
        );
    }
    let local = local_zone();
    let mut json = Vec::new();
    let mut text = String::new();
    for rb in runbooks {
        for t in &rb.triggers {
            let Some(schedule) = Schedule::of(t) else {
                continue;
            };
            let times = upcoming(&schedule, from, args.count.clamp(1, 1000));
            let zone = match t {
                Trigger::Cron { timezone, .. } => *timezone,
                _ => local,
            };
            let disabled = if rb.enabled { "" } else { " (disabled)" };
            text.push_str(&format!("{}  {}{disabled}\n", rb.name, t.describe()));
            for at in &times {
                let in_zone = at
                    .with_timezone(&zone)
                    .format("%a %Y-%m-%d %H:%M:%S %Z")
                    .to_string();
                let here = at.with_timezone(&local).format("%H:%M %Z").to_string();
                let utc = at.format("%Y-%m-%d %H:%M:%S UTC");
                if zone == local || here.ends_with(" UTC") {
                    text.push_str(&format!("  {in_zone:<28}  {utc}\n"));
                } else {
                    text.push_str(&format!("  {in_zone:<28}  {utc}  (here {here})\n"));
                }
            }
            json.push(serde_json::json!({
                "runbook": rb.name, "trigger": t.key(), "enabled": rb.enabled,
                "timezone": zone.name(), "next": times,
            }));
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json).expect("json"));
    } else if text.is_empty() {
        println!("no schedules");
    } else {
        print!("{text}");
    }
    if !loaded.errors.is_empty() {
        eprintln!(
            "note: {} runbook file(s) have errors and are not shown; `runbookd check` lists them",
            loaded.failed.len()
        );
    }
    Ok(Exit::Ok)
}
