//! How results read in a terminal: local times with their zone, human
//! durations, aligned tables that fit 80 columns, and text from payloads made
//! harmless to a terminal ([`printable`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// `s` with every control character (C0, DEL, C1: CR, LF, ESC, CSI ...)
/// written as an escape (`\n`, `\r`, `\t`, `\u{1b}`), so a payload cannot
/// forge lines, move the cursor, clear the screen or set the terminal's title.
/// Human-readable output passes every value it did not write itself through
/// this; JSON output stays exact.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Multi-line text we laid out (pretty JSON) with each line made [`printable`].
pub fn printable_lines(s: &str) -> String {
    s.lines().map(printable).collect::<Vec<_>>().join("\n")
}

/// The zone of the person at the terminal: `TZ`, else the system's, else UTC.
pub fn local_zone() -> Tz {
    std::env::var("TZ")
        .ok()
        .map(|s| s.trim_start_matches(':').to_string())
        .or_else(|| iana_time_zone::get_timezone().ok())
        .and_then(|name| name.parse().ok())
        .unwrap_or(Tz::UTC)
}

/// `2026-11-24 09:00:03 CET`.
pub fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&local_zone())
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A coming instant for people: local time, and UTC when that differs.
pub fn when(t: DateTime<Utc>) -> String {
    let local = t
        .with_timezone(&local_zone())
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string();
    if local.ends_with(" UTC") {
        local
    } else {
        format!("{local} ({} UTC)", t.format("%H:%M:%S"))
    }
}

/// `09:00:03` for log lines.
pub fn clock_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&local_zone())
        .format("%H:%M:%S%.3f")
        .to_string()
}

pub fn elapsed(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> String {
    match to {
        Some(to) => crate::duration::human((to - from).to_std().unwrap_or(Duration::ZERO)),
        None => "-".into(),
    }
}

/// A table with a header row; the last column takes what is left of 80.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    /// Add a row; each cell is made [`printable`] (cells are one line).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    /// Render with each column as wide as its widest cell, cutting cells of
    /// the widest column so that lines fit `width`.
    pub fn render(&self, width: usize) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let total = widths.iter().sum::<usize>() + 2 * (n - 1);
        if total > width {
            // Shrink the widest column, never below its header.
            let (wi, _) = widths
                .iter()
                .enumerate()
                .max_by_key(|(_, w)| **w)
                .expect("a column");
            widths[wi] = widths[wi]
                .saturating_sub(total - width)
                .max(self.header[wi].len())
                .max(8);
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for r in std::iter::once(&header).chain(self.rows.iter()) {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| fit(c, widths[i]))
                .collect();
            let line = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i + 1 == n {
                        c.clone()
                    } else {
                        format!("{c:<w$}", w = widths[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ");
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_fit() {
        let mut t = Table::new(vec!["ID", "NAME"]);
        t.row(vec!["1".into(), "short".into()]);
        t.row(vec!["22".into(), "x".repeat(100)]);
        let out = t.render(40);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "ID  NAME");
        assert_eq!(lines[1], "1   short");
        assert!(lines[2].chars().count() <= 40 && lines[2].ends_with('…'));
    }
}
