//! The summary `runbookd serve` prints when it starts: where it listens, what
//! it loaded (enabled, disabled, failed), the webhook paths it answers, and
//! the next fire time of each schedule, in the trigger's zone and in UTC, in
//! aligned columns. A pure function of what was loaded, so a test can pin it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::runbook::{Registry, Trigger};
use crate::schedule::slots::{Schedule, upcoming};

/// How many next fire times the banner lists; `runbookd next` lists them all.
const SHOWN: usize = 20;

pub struct Facts<'a> {
    pub addr: &'a std::net::SocketAddr,
    pub database: &'a str,
    pub runbooks_dir: &'a std::path::Path,
    /// What became of the runs a previous process left running.
    pub recovered: crate::run::Recovered,
}

pub fn render(reg: &Registry, facts: &Facts, now: DateTime<Utc>) -> String {
    let runbooks = reg.all();
    let enabled = runbooks.iter().filter(|r| r.enabled).count();
    let failed = (reg.errors.iter().map(|e| &e.path))
        .collect::<std::collections::HashSet<_>>()
        .len();
    let mut out = format!("runbookd {} serving\n", env!("CARGO_PKG_VERSION"));
    out += &format!("  listening  http://{}\n", facts.addr);
    out += &format!("  database   {}\n", facts.database);
    out += &format!(
        "  runbooks   {enabled} enabled, {} disabled, {failed} failed, from {}\n",
        runbooks.len() - enabled,
        facts.runbooks_dir.display()
    );
    for e in &reg.errors {
        out += &format!("    error: {e}\n");
    }
    for w in &reg.warnings {
        out += &format!("    warning: {w}\n");
    }
    let r = facts.recovered;
    if r.interrupted > 0 {
        out += &format!(
            "  recovered  {} interrupted run(s), {} queued again",
            r.interrupted, r.queued
        );
        if r.abandoned > 0 {
            out += &format!(", {} abandoned (interrupted too many times)", r.abandoned);
        }
        out += "\n";
    }
    let mut hooks = Vec::new();
    let mut fires = Vec::new();
    for rb in runbooks.iter().filter(|r| r.enabled) {
        for t in &rb.triggers {
            if let Trigger::Webhook(w) = t {
                hooks.push(vec![
                    format!("POST {}", w.path),
                    rb.name.clone(),
                    format!("auth {}", w.auth.as_str()),
                ]);
            }
            if let Some(next) = Schedule::of(t).and_then(|s| upcoming(&s, now, 1).pop()) {
                let zone = match t {
                    Trigger::Cron { timezone, .. } => *timezone,
                    _ => Tz::UTC,
                };
                fires.push((
                    next,
                    vec![
                        rb.name.clone(),
                        t.describe(),
                        in_zone(next, zone),
                        utc(next, zone),
                    ],
                ));
            }
        }
    }
    if !hooks.is_empty() {
        out += "  webhooks\n";
        out += &aligned(&hooks);
    }
    fires.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    if fires.is_empty() {
        out += "  schedules  none\n";
    } else {
        out += "  next fire times (in the trigger's zone, then UTC)\n";
        let rows: Vec<Vec<String>> = fires.iter().take(SHOWN).map(|(_, r)| r.clone()).collect();
        out += &aligned(&rows);
        let more = fires.len().saturating_sub(SHOWN);
        if more > 0 {
            out += &format!("    ... and {more} more (runbookd next lists them all)\n");
        }
    }
    out
}

/// `2026-12-07 09:00:00 CET`.
fn in_zone(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `08:00:00 UTC`, or nothing when the zone is UTC already.
fn utc(t: DateTime<Utc>, zone: Tz) -> String {
    if zone == Tz::UTC {
        String::new()
    } else {
        t.format("%H:%M:%S UTC").to_string()
    }
}

/// Rows as columns padded to their widest cell, indented under their heading.
fn aligned(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out += &format!("    {}\n", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::aligned;

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["a".to_string(), "every 5m".into(), "x".into()],
            vec!["stale-tickets".to_string(), "cron".into(), "".into()],
        ];
        assert_eq!(
            aligned(&rows),
            "    a              every 5m  x\n    stale-tickets  cron\n"
        );
    }
}
