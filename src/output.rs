//! How results read in a terminal: local times with their zone, human
//! durations, aligned tables that fit the terminal (80 columns when stdout is
//! not one), cut with `…`, never wrapped, and text from payloads made
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

/// How wide tables may be: `COLUMNS` when set, else the terminal's width,
/// else (a pipe, a file) 80.
pub fn width() -> usize {
    if let Some(n) = std::env::var("COLUMNS").ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    terminal_width().unwrap_or(80)
}

#[cfg(unix)]
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize we pass, on a descriptor we only read.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(size.ws_col as usize)
}

#[cfg(not(unix))]
fn terminal_width() -> Option<usize> {
    None
}

/// A table with a header row, fitted to a width by [`Table::render`].
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    /// The columns that lose characters first when the table is too wide
    /// (free text such as titles), by index.
    shrink_first: Vec<usize>,
}

impl Table {
    pub fn new(header: Vec<&'static str>) -> Self {
        Table {
            header,
            rows: Vec::new(),
            shrink_first: Vec::new(),
        }
    }

    /// Name the columns that can lose most (free text: titles, subjects,
    /// details): a table too wide narrows them first, the widest of them
    /// each time, so they end up about as wide as each other.
    pub fn shrink_first(mut self, columns: &[&str]) -> Self {
        self.shrink_first = columns
            .iter()
            .filter_map(|c| self.header.iter().position(|h| h == c))
            .collect();
        self
    }

    /// Add a row; each cell is made [`printable`] (cells are one line).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    /// Render with each column as wide as its widest cell; while a line would
    /// be wider than `width`, the widest of the [`Table::shrink_first`]
    /// columns loses a character, then the column that can lose most (the
    /// most characters above its floor: its header, or 8) is narrowed as far
    /// as needed; cells are cut with `…`. Lines never wrap, unless even the
    /// floors do not fit.
    pub fn render(&self, width: usize) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let floors: Vec<usize> = self
            .header
            .iter()
            .zip(&widths)
            .map(|(h, w)| (*w).min(h.chars().count().max(8)))
            .collect();
        let mut total = widths.iter().sum::<usize>() + 2 * (n - 1);
        while total > width {
            let Some(i) = (self.shrink_first.iter().copied())
                .filter(|i| widths[*i] > floors[*i])
                .max_by_key(|i| (widths[*i], *i))
            else {
                break;
            };
            widths[i] -= 1;
            total -= 1;
        }
        while total > width {
            let (i, slack) = (0..n)
                .map(|i| (i, widths[i] - floors[i]))
                .max_by_key(|(i, slack)| (*slack, *i))
                .expect("a column");
            if slack == 0 {
                break;
            }
            let cut = slack.min(total - width);
            widths[i] -= cut;
            total -= cut;
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

    #[test]
    fn the_column_that_can_lose_most_is_cut() {
        let mut t = Table::new(vec!["NAME", "NEXT", "TRIGGERS"]);
        t.row(vec![
            "provider-health".into(),
            "2026-12-05 00:49:00 UTC".into(),
            "cron 0 9 1 1,4,7,10 * (Europe/Paris), cron 0 9 * * 1 (Europe/Paris)".into(),
        ]);
        t.row(vec!["a".into(), "-".into(), "manual".into()]);
        assert_eq!(
            t.render(60),
            "NAME             NEXT                     TRIGGERS\n\
             provider-health  2026-12-05 00:49:00 UTC  cron 0 9 1 1,4,7,…\n\
             a                -                        manual\n"
        );
        // Narrower: the longest column gives up what it can, then the next.
        let levelled = {
            let mut t = Table::new(vec!["KEY", "TITLE"]).shrink_first(&["KEY", "TITLE"]);
            t.row(vec!["k".repeat(50), "t".repeat(90)]);
            t.render(40)
        };
        assert_eq!(
            levelled.lines().nth(1),
            Some(format!("{}…  {}…", "k".repeat(18), "t".repeat(18)).as_str())
        );
        let out = t.render(40);
        assert!(out.lines().all(|l| l.chars().count() <= 40), "{out}");
        assert_eq!(
            out.lines().nth(1),
            Some("provider-health  2026-12-05 0…  cron 0 …")
        );
    }
}
