//! Duration strings as runbooks and the config write them: `30s`, `5m`, `2h`, `1d`, `1h30m`.

use std::time::Duration;

/// Parse a duration string.
///
/// Fails with a sentence that says what a valid duration looks like.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration; write a number and a unit, like 30s, 5m, 2h or 1d".into());
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "duration \"{t}\" has no unit; write {t}s for seconds or {t}m for minutes"
        ));
    }
    humantime::parse_duration(t).map_err(|_| {
        format!("invalid duration \"{t}\"; write a number and a unit, like 30s, 5m, 2h or 1d")
    })
}

/// Render a duration for people, to its two largest units: `850ms`,
/// `12.4s`, `4m 12s`, `2h 3m`, `3d 4h` (`4m`, not `4m 0s`). The one rule for
/// the CLI and for scripts (`d.human()`).
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let (big, small) = match secs {
        ..3_600 => ((secs / 60, "m"), (secs % 60, "s")),
        3_600..86_400 => ((secs / 3_600, "h"), (secs % 3_600 / 60, "m")),
        _ => ((secs / 86_400, "d"), (secs % 86_400 / 3_600, "h")),
    };
    if small.0 == 0 {
        format!("{}{}", big.0, big.1)
    } else {
        format!("{}{} {}{}", big.0, big.1, small.0, small.1)
    }
}

/// Render a duration the way a runbook writes it: `90d`, `1h 30m`, `250ms`.
pub fn spec(d: Duration) -> String {
    let mut secs = d.as_secs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 || parts.is_empty() {
        parts.push(format!("{ms}ms"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_runbooks_use() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn explains_bad_durations() {
        assert_eq!(
            parse("15").unwrap_err(),
            "duration \"15\" has no unit; write 15s for seconds or 15m for minutes"
        );
        assert!(
            parse("soon")
                .unwrap_err()
                .starts_with("invalid duration \"soon\"")
        );
    }

    #[test]
    fn renders_for_people() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(12_400)), "12.4s");
        assert_eq!(human(Duration::from_secs(185)), "3m 5s");
        assert_eq!(human(Duration::from_millis(252_308)), "4m 12s");
        assert_eq!(human(Duration::from_secs(7_380)), "2h 3m");
        assert_eq!(human(Duration::from_secs(7_200)), "2h");
        assert_eq!(
            human(Duration::from_secs(3 * 86_400 + 4 * 3_600 + 59)),
            "3d 4h"
        );
        assert_eq!(spec(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(spec(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(spec(Duration::from_millis(1250)), "1s 250ms");
        assert_eq!(spec(Duration::ZERO), "0ms");
    }
}
