//! The start-up summary `runbookd serve` prints: where it listens, what it
//! loaded, what it recovered, and when each schedule fires next.

use chrono::Utc;

use super::Parts;
use crate::schedule::slots::{Schedule, upcoming};

/// Print the summary; `recovered` is (runs interrupted, runs queued again).
pub(super) fn print(p: &Parts, addr: &std::net::SocketAddr, recovered: (usize, usize)) {
    let (stuck, retried) = recovered;
    let reg = p.registry.read().expect("registry lock");
    let runbooks = reg.all();
    let mut out = String::new();
    out.push_str(&format!("runbookd {} serving\n", env!("CARGO_PKG_VERSION")));
    out.push_str(&format!("  listening  http://{addr}\n"));
    out.push_str(&format!("  database   {}\n", p.config.database));
    out.push_str(&format!(
        "  runbooks   {} loaded, {} failed, from {}\n",
        runbooks.len(),
        reg.errors
            .iter()
            .map(|e| &e.path)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        p.config.runbooks.display()
    ));
    for e in &reg.errors {
        out.push_str(&format!("    error: {e}\n"));
    }
    if stuck > 0 {
        out.push_str(&format!(
            "  recovered  {stuck} interrupted run(s), {retried} queued again\n"
        ));
    }
    let now = Utc::now();
    let mut lines = Vec::new();
    for rb in runbooks.iter().filter(|r| r.enabled) {
        for t in &rb.triggers {
            if let Some(next) = Schedule::of(t).and_then(|s| upcoming(&s, now, 1).pop()) {
                lines.push((
                    next,
                    format!(
                        "    {:<20} {:<34} {}\n",
                        rb.name,
                        t.describe(),
                        crate::output::when(next)
                    ),
                ));
            }
        }
    }
    lines.sort();
    out.push_str(if lines.is_empty() {
        "  schedules  none\n"
    } else {
        "  next fire times:\n"
    });
    const SHOWN: usize = 20;
    let more = lines.len().saturating_sub(SHOWN);
    for (_, l) in lines.into_iter().take(SHOWN) {
        out.push_str(&l);
    }
    if more > 0 {
        out.push_str(&format!(
            "    ... and {more} more (runbookd next lists them all)\n"
        ));
    }
    say(&out);
}

/// Write to stdout; a closed stdout (a pipe whose reader went away) must not
/// take the daemon down.
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}
