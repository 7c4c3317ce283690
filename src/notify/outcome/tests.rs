//! The delivery rules of docs/email-and-issues.md, one attempt at a time.

use super::*;
use crate::store::Recipients;

fn t0() -> DateTime<Utc> {
    "2026-03-01T08:00:00Z".parse().unwrap()
}

fn email(attempts: i64, results: Recipients) -> EmailRow {
    EmailRow {
        id: 1,
        runbook: "job".into(),
        run_id: None,
        sender: "runbookd@ops.example.com".into(),
        to: vec!["ana@example.com".into(), "bo@example.com".into()],
        cc: vec!["lead@example.com".into()],
        subject: "s".into(),
        text: Some("x".into()),
        html: None,
        message_id: "<1@ops.example.com>".into(),
        status: EmailStatus::Sending,
        attempts,
        next_attempt_at: t0(),
        last_error: None,
        results,
        created_at: t0(),
        sent_at: None,
    }
}

fn replies(list: &[(&str, Reply)]) -> BTreeMap<String, Reply> {
    list.iter()
        .map(|(w, r)| (w.to_string(), r.clone()))
        .collect()
}

fn result(status: RecipientStatus, reply: &str, attempts: u32, ambiguous: u32) -> RecipientResult {
    RecipientResult {
        status,
        reply: reply.into(),
        attempts,
        ambiguous,
    }
}

const DELAY: Duration = Duration::from_secs(30);

#[test]
fn a_refused_recipient_fails_alone_and_a_busy_one_is_tried_again_alone() {
    let first = settle(
        &email(1, Recipients::new()),
        replies(&[
            ("ana@example.com", Reply::Accepted("250 OK".into())),
            ("bo@example.com", Reply::Permanent("550 no".into())),
            ("lead@example.com", Reply::Temporary("450 busy".into())),
        ]),
        t0(),
        DELAY,
    );
    use RecipientStatus::*;
    let expected: Recipients = [
        ("ana@example.com", result(Sent, "250 OK", 1, 0)),
        ("bo@example.com", result(Failed, "550 no", 1, 0)),
        ("lead@example.com", result(Deferred, "450 busy", 1, 0)),
    ]
    .into_iter()
    .map(|(w, r)| (w.to_string(), r))
    .collect();
    assert_eq!(
        first,
        EmailAttempt {
            status: EmailStatus::Queued,
            results: expected,
            error: Some(
                "bo@example.com: failed — 550 no; lead@example.com: deferred — 450 busy".into()
            ),
            retry_at: Some(t0() + TimeDelta::seconds(30)),
            counted: true,
        }
    );
    let row = email(2, first.results);
    assert_eq!(to_try(&row), vec!["lead@example.com".to_string()]);
    let second = settle(
        &row,
        replies(&[("lead@example.com", Reply::Accepted("250 OK".into()))]),
        t0(),
        DELAY,
    );
    assert_eq!(second.status, EmailStatus::Partial);
    assert_eq!(
        second.results["lead@example.com"],
        result(Sent, "250 OK", 2, 0)
    );
    assert_eq!(second.retry_at, None);
    assert_eq!(
        second.error.as_deref(),
        Some("bo@example.com: failed — 550 no")
    );
}

#[test]
fn the_ends_follow_from_every_recipients_result() {
    use RecipientStatus::*;
    let cases: [(&[RecipientStatus], EmailStatus); 5] = [
        (&[Sent, Sent, Sent], EmailStatus::Sent),
        (&[Sent, Failed, Sent], EmailStatus::Partial),
        (&[Failed, Failed, Failed], EmailStatus::Failed),
        (&[Sent, Failed, Ambiguous], EmailStatus::Ambiguous),
        (&[Failed, Failed, Deferred], EmailStatus::Queued),
    ];
    for (statuses, expected) in cases {
        let results: Recipients = ["ana@example.com", "bo@example.com", "lead@example.com"]
            .iter()
            .zip(statuses)
            .map(|(w, s)| {
                (
                    w.to_string(),
                    result(*s, "said", 1, u32::from(*s == Ambiguous) * 2),
                )
            })
            .collect();
        let got = settle(&email(1, results), BTreeMap::new(), t0(), DELAY);
        assert_eq!(got.status, expected, "{statuses:?}");
    }
}

#[test]
fn a_copy_lost_after_data_is_tried_once_more_then_ends_ambiguous() {
    let lost = || Reply::Lost("the connection was lost after the message".into());
    let everyone = |r: Reply| {
        replies(&[
            ("ana@example.com", r.clone()),
            ("bo@example.com", r.clone()),
            ("lead@example.com", r),
        ])
    };
    let first = settle(&email(1, Recipients::new()), everyone(lost()), t0(), DELAY);
    assert_eq!(first.status, EmailStatus::Queued);
    assert_eq!(to_try(&email(2, first.results.clone())).len(), 3);
    let second = settle(&email(2, first.results), everyone(lost()), t0(), DELAY);
    assert_eq!(second.status, EmailStatus::Ambiguous);
    assert!(to_try(&email(3, second.results.clone())).is_empty());
    assert_eq!(
        second.results["ana@example.com"],
        result(
            RecipientStatus::Ambiguous,
            "the connection was lost after the message",
            2,
            2
        )
    );
}

#[test]
fn the_last_attempt_fails_who_is_still_busy_and_the_wait_doubles_up_to_an_hour() {
    let busy = replies(&[
        ("ana@example.com", Reply::Temporary("450 busy".into())),
        ("bo@example.com", Reply::Temporary("450 busy".into())),
        ("lead@example.com", Reply::Temporary("450 busy".into())),
    ]);
    let third = settle(&email(3, Recipients::new()), busy.clone(), t0(), DELAY);
    assert_eq!(third.retry_at, Some(t0() + TimeDelta::seconds(120)));
    let late = settle(&email(11, Recipients::new()), busy.clone(), t0(), DELAY);
    assert_eq!(late.retry_at, Some(t0() + TimeDelta::hours(1)));
    let last = settle(&email(MAX_ATTEMPTS, Recipients::new()), busy, t0(), DELAY);
    assert_eq!((last.status, last.retry_at), (EmailStatus::Failed, None));
    assert_eq!(
        last.results["bo@example.com"].reply,
        "450 busy (gave up after 12 attempts)"
    );
}

#[test]
fn a_refused_login_holds_the_email_uncounted_with_its_results() {
    let results: Recipients = [(
        "ana@example.com".to_string(),
        result(RecipientStatus::Sent, "250 OK", 1, 0),
    )]
    .into();
    let held = hold(
        &email(2, results.clone()),
        "permanent error (535): Invalid credentials",
        t0(),
    );
    assert_eq!(
        held,
        EmailAttempt {
            status: EmailStatus::Queued,
            results,
            error: Some("held: the mail server refused our login (permanent error (535): Invalid credentials); tried again every 15 minutes".into()),
            retry_at: Some(t0() + TimeDelta::minutes(15)),
            counted: false,
        }
    );
}
