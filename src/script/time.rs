//! Time for scripts: `now()`, `duration("72h")`, `parse_time(s)`, arithmetic,
//! comparison, `.rfc3339()`, `.format(fmt, tz)`, `.human()` and `business_hours(...)`.
//!
//! Timestamps are UTC instants; a zone only matters when one is formatted or
//! compared with business hours.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;
use rhai::{EvalAltResult, Module, NativeCallContext};

use super::api::{host, reg};

/// An instant, shown to scripts as the type `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

/// A length of time, shown to scripts as the type `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub TimeDelta);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let sign = if self.0 < TimeDelta::zero() { "-" } else { "" };
        let std = self.0.abs().to_std().unwrap_or_default();
        write!(f, "{sign}{}", humantime::format_duration(std))
    }
}

type Res<T> = Result<T, Box<EvalAltResult>>;

fn parse_zone(name: &str) -> Res<Tz> {
    name.parse::<Tz>().map_err(|_| {
        format!("unknown timezone \"{name}\"; use an IANA name such as Europe/Paris").into()
    })
}

/// Accepts RFC 3339, `YYYY-MM-DD HH:MM[:SS]` (UTC) and `YYYY-MM-DD` (midnight UTC).
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Timestamp(t.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(Timestamp(t.and_utc()));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(Timestamp(d.and_time(NaiveTime::MIN).and_utc()));
    }
    Err(format!(
        "cannot read \"{s}\" as a time; use RFC 3339 such as 2026-03-08T09:00:00Z"
    ))
}

fn to_span(d: std::time::Duration) -> Res<Span> {
    TimeDelta::from_std(d)
        .map(Span)
        .map_err(|_| "duration too long".into())
}

fn shift(t: Timestamp, d: Span, sign: i32) -> Res<Timestamp> {
    let r = if sign > 0 {
        t.0.checked_add_signed(d.0)
    } else {
        t.0.checked_sub_signed(d.0)
    };
    r.map(Timestamp)
        .ok_or_else(|| "time arithmetic out of range".into())
}

fn weekday_index(s: &str) -> Option<u32> {
    let day = match s.trim().to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    };
    Some(day.num_days_from_monday())
}

/// Whether `t`, seen in `tz`, falls within `hours` ("09:00-18:00") on `days` ("Mon-Fri" or "Mon,Wed").
pub fn business_hours(t: Timestamp, tz: &str, hours: &str, days: &str) -> Result<bool, String> {
    let tz: Tz = tz
        .parse()
        .map_err(|_| format!("unknown timezone \"{tz}\""))?;
    let local = t.0.with_timezone(&tz);
    let (from, to) = hours
        .split_once('-')
        .and_then(|(a, b)| {
            Some((
                NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?,
                NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?,
            ))
        })
        .ok_or_else(|| format!("business hours \"{hours}\" must look like 09:00-18:00"))?;
    // Hours past midnight in an overnight range belong to the day they started.
    let overnight_tail = from > to && local.time() < to;
    let day = if overnight_tail {
        local.weekday().pred()
    } else {
        local.weekday()
    };
    let today = day.num_days_from_monday();
    let mut on_day = false;
    for part in days.split(',') {
        let bad = || format!("business days \"{days}\" must look like Mon-Fri or Mon,Wed,Fri");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (
                    weekday_index(a).ok_or_else(bad)?,
                    weekday_index(b).ok_or_else(bad)?,
                );
                on_day |= if a <= b {
                    (a..=b).contains(&today)
                } else {
                    today >= a || today <= b
                };
            }
            None => on_day |= weekday_index(part).ok_or_else(bad)? == today,
        }
    }
    let now = local.time();
    // Hours like 22:00-06:00 run past midnight; the day is the one they start on.
    let within = if from <= to {
        now >= from && now < to
    } else {
        now >= from || now < to
    };
    Ok(on_day && within)
}

pub fn register(m: &mut Module) {
    reg!(m, "now", |ctx: NativeCallContext| -> Res<Timestamp> {
        Ok(Timestamp(host(&ctx)?.ask(|h| h.now())))
    });
    reg!(m, "duration", |s: &str| -> Res<Span> {
        to_span(crate::duration::parse(s).map_err(Box::<EvalAltResult>::from)?)
    });
    reg!(m, "seconds", |n: i64| -> Res<Span> {
        Ok(Span(TimeDelta::seconds(n)))
    });
    reg!(m, "parse_time", |s: &str| -> Res<Timestamp> {
        parse_time(s).map_err(Into::into)
    });
    reg!(m, "from_unix", |n: i64| -> Res<Timestamp> {
        DateTime::from_timestamp(n, 0)
            .map(Timestamp)
            .ok_or_else(|| "unix time out of range".into())
    });
    reg!(m, "business_hours", |t: Timestamp,
                               tz: &str,
                               hours: &str,
                               days: &str|
     -> Res<bool> {
        business_hours(t, tz, hours, days).map_err(Into::into)
    });

    reg!(m, "+", |t: Timestamp, d: Span| shift(t, d, 1));
    reg!(m, "+", |d: Span, t: Timestamp| shift(t, d, 1));
    reg!(m, "-", |t: Timestamp, d: Span| shift(t, d, -1));
    reg!(m, "-", |a: Timestamp, b: Timestamp| -> Res<Span> {
        Ok(Span(a.0 - b.0))
    });
    reg!(m, "+", |a: Span, b: Span| -> Res<Span> {
        Ok(Span(a.0 + b.0))
    });
    reg!(m, "-", |a: Span, b: Span| -> Res<Span> {
        Ok(Span(a.0 - b.0))
    });
    reg!(m, "*", |a: Span, n: i64| -> Res<Span> {
        a.0.checked_mul(n as i32)
            .map(Span)
            .ok_or_else(|| "duration too long".into())
    });
    macro_rules! compare {
        ($t:ty) => {
            reg!(m, "<", |a: $t, b: $t| -> Res<bool> { Ok(a < b) });
            reg!(m, "<=", |a: $t, b: $t| -> Res<bool> { Ok(a <= b) });
            reg!(m, ">", |a: $t, b: $t| -> Res<bool> { Ok(a > b) });
            reg!(m, ">=", |a: $t, b: $t| -> Res<bool> { Ok(a >= b) });
            reg!(m, "==", |a: $t, b: $t| -> Res<bool> { Ok(a == b) });
            reg!(m, "!=", |a: $t, b: $t| -> Res<bool> { Ok(a != b) });
            reg!(m, "to_string", |a: $t| -> Res<String> { Ok(a.to_string()) });
            reg!(m, "to_debug", |a: $t| -> Res<String> { Ok(a.to_string()) });
        };
    }
    compare!(Timestamp);
    compare!(Span);

    reg!(m, "rfc3339", |t: Timestamp| -> Res<String> {
        Ok(t.to_string())
    });
    reg!(m, "unix", |t: Timestamp| -> Res<i64> {
        Ok(t.0.timestamp())
    });
    reg!(m, "format", |ctx: NativeCallContext,
                       t: Timestamp,
                       fmt: &str|
     -> Res<String> {
        let tz = host(&ctx)?.ask(|h| h.timezone());
        Ok(t.0.with_timezone(&tz).format(fmt).to_string())
    });
    reg!(m, "format", |t: Timestamp,
                       fmt: &str,
                       tz: &str|
     -> Res<String> {
        Ok(t.0.with_timezone(&parse_zone(tz)?).format(fmt).to_string())
    });
    reg!(m, "seconds", |d: Span| -> Res<i64> {
        Ok(d.0.num_seconds())
    });
    reg!(m, "minutes", |d: Span| -> Res<i64> {
        Ok(d.0.num_minutes())
    });
    reg!(m, "hours", |d: Span| -> Res<i64> { Ok(d.0.num_hours()) });
    reg!(m, "days", |d: Span| -> Res<i64> { Ok(d.0.num_days()) });
    // `4m 12s`, `2h 3m`: for messages people read (`${d}` keeps every unit).
    reg!(m, "human", |d: Span| -> Res<String> {
        let sign = if d.0 < TimeDelta::zero() { "-" } else { "" };
        let std = d.0.abs().to_std().unwrap_or_default();
        Ok(format!("{sign}{}", crate::duration::human(std)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_common_time_spellings() {
        let t = parse_time("2026-03-08T09:00:00-05:00").unwrap();
        assert_eq!(t.to_string(), "2026-03-08T14:00:00Z");
        assert_eq!(
            parse_time("2026-03-08").unwrap().to_string(),
            "2026-03-08T00:00:00Z"
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn business_hours_follow_the_zone() {
        // 2026-11-23 is a Monday; 08:30Z is 09:30 in Paris.
        let t = parse_time("2026-11-23T08:30:00Z").unwrap();
        assert!(business_hours(t, "Europe/Paris", "09:00-18:00", "Mon-Fri").unwrap());
        assert!(!business_hours(t, "America/New_York", "09:00-18:00", "Mon-Fri").unwrap());
        assert!(!business_hours(t, "Europe/Paris", "09:00-18:00", "Sat,Sun").unwrap());
    }

    #[test]
    fn overnight_hours_belong_to_the_day_they_start() {
        // 2026-11-28 is a Saturday: 02:00 then is Friday night's shift.
        let sat = parse_time("2026-11-28T02:00:00Z").unwrap();
        let mon = parse_time("2026-11-23T02:00:00Z").unwrap();
        let fri_late = parse_time("2026-11-27T23:00:00Z").unwrap();
        assert!(business_hours(sat, "UTC", "22:00-06:00", "Mon-Fri").unwrap());
        assert!(!business_hours(mon, "UTC", "22:00-06:00", "Mon-Fri").unwrap());
        assert!(business_hours(fri_late, "UTC", "22:00-06:00", "Mon-Fri").unwrap());
    }
}
