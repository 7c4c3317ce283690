//! Table tests of the slot function over real tz data.

use super::*;
use crate::runbook::CatchUp;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn cron(expr: &str, tz: &str) -> Schedule {
    Schedule::Cron {
        cron: Box::new(crate::runbook::parse_cron(expr).unwrap()),
        tz: tz.parse().unwrap(),
    }
}

fn slots(s: &Schedule, from: &str, to: &str) -> Vec<String> {
    let (mut t, end) = (utc(from), utc(to));
    let mut out = Vec::new();
    while let Some(n) = s.next_after(t) {
        if n > end {
            break;
        }
        out.push(n.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        t = n;
    }
    out
}

#[test]
fn dst_table() {
    let cases: &[(&str, &str, &str, &str, &[&str])] = &[
        // New York springs forward at 02:00 EST on 2026-03-08: 02:30 does not
        // exist, so the job runs once, at 03:00 EDT (07:00Z).
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            "2026-03-09T12:00:00Z",
            &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
        ),
        // It falls back at 02:00 EDT on 2026-11-01: 01:30 happens twice; the job runs once, at the first.
        (
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T12:00:00Z",
            "2026-11-02T12:00:00Z",
            &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
        ),
        // A step job runs at every real matching instant through the repeated hour.
        (
            "*/30 * * * *",
            "America/New_York",
            "2026-11-01T04:59:00Z",
            "2026-11-01T06:30:00Z",
            &[
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
            ],
        ),
        // ... and never in a burst after a gap: 01:00, (02:xx skipped), 03:00 EDT.
        (
            "0 * * * *",
            "America/New_York",
            "2026-03-08T05:30:00Z",
            "2026-03-08T08:00:00Z",
            &[
                "2026-03-08T06:00:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z",
            ],
        ),
        // Berlin springs forward 2026-03-29 02:00 CET → 03:00 CEST.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            "2026-03-30T12:00:00Z",
            &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        // Berlin falls back 2026-10-25 03:00 CEST → 02:00 CET: 02:30 once, at the first (00:30Z).
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-24T12:00:00Z",
            "2026-10-26T12:00:00Z",
            &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
        // Lord Howe moves by half an hour: 02:00 → 02:30 on 2026-10-04 (UTC+10:30 → +11).
        // 02:15 does not exist that night: the job runs at 02:30 (15:30Z), then 02:15 +11.
        (
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            "2026-10-05T00:00:00Z",
            &["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"],
        ),
        // ... and back 02:00 → 01:30 on 2026-04-05 (UTC+11 → +10:30): 01:45 happens twice, runs once.
        (
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-04T00:00:00Z",
            "2026-04-06T00:00:00Z",
            &["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
        ),
        // Vixie cron: day-of-month and day-of-week both restricted means either.
        // 2026-06-01 is a Monday; the 1st of July is a Wednesday.
        (
            "0 12 1 * 5",
            "UTC",
            "2026-06-01T00:00:00Z",
            "2026-07-02T00:00:00Z",
            &[
                "2026-06-01T12:00:00Z",
                "2026-06-05T12:00:00Z",
                "2026-06-12T12:00:00Z",
                "2026-06-19T12:00:00Z",
                "2026-06-26T12:00:00Z",
                "2026-07-01T12:00:00Z",
            ],
        ),
        // Six fields: seconds first.
        (
            "*/20 * * * * *",
            "UTC",
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:01:00Z",
            &[
                "2026-01-01T00:00:20Z",
                "2026-01-01T00:00:40Z",
                "2026-01-01T00:01:00Z",
            ],
        ),
        (
            "@daily",
            "Asia/Kolkata",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            &["2026-01-01T18:30:00Z"],
        ),
    ];
    for (expr, tz, from, to, expected) in cases {
        assert_eq!(
            slots(&cron(expr, tz), from, to),
            *expected,
            "{expr} in {tz}"
        );
    }
}

#[test]
fn every_is_aligned_to_the_epoch() {
    let s = Schedule::Every {
        interval: Duration::from_secs(300),
    };
    assert_eq!(
        slots(&s, "2026-01-01T00:03:17Z", "2026-01-01T00:12:00Z"),
        ["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"]
    );
}

fn policy(catch_up: CatchUp) -> Policy {
    Policy {
        catch_up,
        within: None,
    }
}

fn hourly() -> Schedule {
    cron("0 * * * *", "UTC")
}

#[test]
fn a_slot_less_than_a_minute_late_just_runs() {
    for p in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
        let plan = plan(
            &hourly(),
            utc("2026-01-01T09:30:00Z"),
            utc("2026-01-01T10:00:59Z"),
            policy(p),
        );
        assert_eq!(plan.run, [utc("2026-01-01T10:00:00Z")], "{p:?}");
        assert!(plan.missed.is_empty());
        assert_eq!(plan.mark, utc("2026-01-01T10:00:00Z"));
        assert_eq!(plan.next, Some(utc("2026-01-01T11:00:00Z")));
    }
}

#[test]
fn catch_up_policies_after_an_outage() {
    // Down from 06:30 to 10:20: slots 07:00, 08:00, 09:00, 10:00 passed.
    let (mark, now) = (utc("2026-01-01T06:30:00Z"), utc("2026-01-01T10:20:00Z"));
    let all = [
        utc("2026-01-01T07:00:00Z"),
        utc("2026-01-01T08:00:00Z"),
        utc("2026-01-01T09:00:00Z"),
        utc("2026-01-01T10:00:00Z"),
    ];

    let p = plan(&hourly(), mark, now, policy(CatchUp::Skip));
    assert_eq!((p.run.as_slice(), p.missed.as_slice()), (&[][..], &all[..]));

    let p = plan(&hourly(), mark, now, policy(CatchUp::Latest));
    assert_eq!(
        (p.run.as_slice(), p.missed.as_slice()),
        (&all[3..], &all[..3])
    );

    let p = plan(&hourly(), mark, now, policy(CatchUp::All));
    assert_eq!((p.run.as_slice(), p.missed.as_slice()), (&all[..], &[][..]));

    // A 09:00 digest is not sent at 17:00: catch_up_within 2h drops the older slots.
    let within = Policy {
        catch_up: CatchUp::All,
        within: Some(TimeDelta::hours(2)),
    };
    let p = plan(&hourly(), mark, now, within);
    assert_eq!(
        (p.run.as_slice(), p.missed.as_slice()),
        (&all[2..], &all[..2])
    );
    for p in [CatchUp::Skip, CatchUp::Latest, CatchUp::All] {
        assert_eq!(plan(&hourly(), mark, now, policy(p)).mark, all[3]);
    }
}

#[test]
fn catch_up_all_is_capped_at_100() {
    let s = Schedule::Every {
        interval: Duration::from_secs(60),
    };
    let (mark, now) = (utc("2026-01-01T00:00:00Z"), utc("2026-01-01T05:00:30Z"));
    let p = plan(&s, mark, now, policy(CatchUp::All));
    assert_eq!(p.run.len(), 100);
    assert_eq!(p.missed.len(), 200);
    assert_eq!(p.run.first(), Some(&utc("2026-01-01T03:21:00Z")));
    assert_eq!(p.run.last(), Some(&utc("2026-01-01T05:00:00Z")));
    assert!(p.missed.windows(2).all(|w| w[0] < w[1]) && p.missed.last() < p.run.first());
}

#[test]
fn a_long_outage_lists_the_latest_missed_slots_and_counts_the_rest() {
    let s = Schedule::Every {
        interval: Duration::from_secs(1),
    };
    let p = plan(
        &s,
        utc("2026-01-01T00:00:00Z"),
        utc("2026-01-02T00:00:00Z"),
        policy(CatchUp::Skip),
    );
    assert_eq!(p.missed.len(), MAX_LISTED_MISSED);
    assert_eq!(
        p.missed.len() as u64 + p.unlisted + p.run.len() as u64,
        86_400
    );
    assert_eq!(p.mark, utc("2026-01-02T00:00:00Z"));
}

#[test]
fn a_clock_stepped_back_never_refires_a_slot() {
    // The mark says 10:00 ran; the clock now reads 09:10.
    let p = plan(
        &hourly(),
        utc("2026-01-01T10:00:00Z"),
        utc("2026-01-01T09:10:00Z"),
        policy(CatchUp::All),
    );
    assert!(p.run.is_empty() && p.missed.is_empty());
    assert_eq!(p.mark, utc("2026-01-01T10:00:00Z"));
    assert_eq!(p.next, Some(utc("2026-01-01T11:00:00Z")));
}

#[test]
fn latest_runs_only_the_most_recent_slot_when_any_is_late() {
    let every_10s = Schedule::Every {
        interval: Duration::from_secs(10),
    };
    // Down for 5 minutes: the 5 slots within the last minute no longer run
    // back to back; only 10:05:00 does.
    let p = plan(
        &every_10s,
        utc("2026-01-01T10:00:00Z"),
        utc("2026-01-01T10:05:05Z"),
        policy(CatchUp::Latest),
    );
    assert_eq!(p.run, [utc("2026-01-01T10:05:00Z")]);
    assert_eq!(p.missed.len(), 29);
    assert_eq!(p.missed.last(), Some(&utc("2026-01-01T10:04:50Z")));
    // No slot late (a busy second): each slot within the grace runs.
    let p = plan(
        &every_10s,
        utc("2026-01-01T10:00:00Z"),
        utc("2026-01-01T10:00:21Z"),
        policy(CatchUp::Latest),
    );
    assert_eq!(
        (p.run.as_slice(), p.missed.as_slice()),
        (
            &[utc("2026-01-01T10:00:10Z"), utc("2026-01-01T10:00:20Z")][..],
            &[][..]
        )
    );
}

#[test]
fn slots_a_clock_step_passed_over_get_no_grace() {
    let every_10s = Schedule::Every {
        interval: Duration::from_secs(10),
    };
    // The scheduler woke for 10:00:10, but the clock had stepped 40 s ahead:
    // 10:00:20 to 10:00:50 were passed over, all of them within a minute.
    let (mark, now) = (utc("2026-01-01T10:00:00Z"), utc("2026-01-01T10:00:50Z"));
    let from = Some((utc("2026-01-01T10:00:10Z"), now));
    let slot = |s: u32| utc(&format!("2026-01-01T10:00:{s:02}Z"));
    let p = plan_after_step(&every_10s, mark, now, policy(CatchUp::Latest), from);
    assert_eq!(
        (p.run, p.missed),
        (vec![slot(50)], vec![slot(10), slot(20), slot(30), slot(40)])
    );
    let p = plan_after_step(&every_10s, mark, now, policy(CatchUp::Skip), from);
    assert_eq!(
        (p.run, p.missed),
        (vec![slot(10)], vec![slot(20), slot(30), slot(40), slot(50)])
    );
    let p = plan_after_step(&every_10s, mark, now, policy(CatchUp::All), from);
    assert_eq!(
        (p.run, p.missed),
        (
            vec![slot(10), slot(20), slot(30), slot(40), slot(50)],
            vec![]
        )
    );
    // Without the step, the same minute is on time under every policy.
    let p = plan(&every_10s, mark, now, policy(CatchUp::Latest));
    assert_eq!(p.run.len(), 5);
    // A small step long before a slot takes no grace from it: an hourly
    // slot on time after a 5 s step at 09:20 runs under `skip`.
    let step = Some((utc("2026-01-01T09:20:00Z"), utc("2026-01-01T09:20:05Z")));
    let p = plan_after_step(
        &hourly(),
        utc("2026-01-01T09:00:00Z"),
        utc("2026-01-01T10:00:00Z"),
        policy(CatchUp::Skip),
        step,
    );
    assert_eq!(
        (p.run, p.missed),
        (vec![utc("2026-01-01T10:00:00Z")], vec![])
    );
}
