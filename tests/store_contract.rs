//! The store contract, tested through its traits (`&dyn Store`), not through
//! one backend: every backend must pass these unchanged. Times are given to
//! the store explicitly, so lease expiry is tested without waiting.
//!
//! Each test runs against a fresh SQLite file, then against a fresh
//! PostgreSQL database when `RUNBOOKD_TEST_POSTGRES_URL` names a server (CI
//! sets it; without it the PostgreSQL half says it was skipped).

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use runbookd::store::*;
use serde_json::json;

/// What keeps a fresh store alive: its file, or its database (dropped
/// after the test).
type Keep = Box<dyn std::any::Any>;

/// A fresh store of each backend: SQLite always, PostgreSQL when
/// `RUNBOOKD_TEST_POSTGRES_URL` names a server.
async fn stores(test: &str) -> Vec<(Arc<dyn Store>, Keep)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let mut out = vec![(
        open(&url, Access::Exclusive).await.expect("store opens"),
        Box::new(dir) as Keep,
    )];
    if let Some(db) = common::postgres::TestDb::create(test) {
        let store = open(&db.url, Access::Exclusive)
            .await
            .expect("PostgreSQL store opens");
        out.push((store, Box::new(db) as Keep));
    }
    // Every run refers to the version of its runbook that it runs.
    let version = VersionRow {
        hash: "v1".into(),
        runbook: "job".into(),
        path: "runbooks/job.yaml".into(),
        yaml: "run: 1".into(),
        scripts: Default::default(),
        created_at: t0(),
    };
    for (store, _) in &out {
        store.save_version(&version).await.expect("version kept");
    }
    out
}

/// Run `test` against every backend.
fn each_store<F, Fut>(test: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    common::init();
    let name = std::thread::current().name().unwrap_or("test").to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for (store, keep) in stores(&name).await {
            test(store).await;
            // The store's connections close before its database is dropped.
            drop(keep);
        }
    });
}

fn t0() -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse().unwrap()
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn new_run(runbook: &str, admission: Admission, at: DateTime<Utc>) -> NewRun {
    NewRun {
        runbook: runbook.into(),
        version_hash: "v1".into(),
        trigger_kind: TriggerKind::Manual,
        trigger_key: None,
        scheduled_at: None,
        params: json!({}),
        trigger_data: json!({}),
        dry_run: false,
        created_at: at,
        admission,
    }
}

async fn queued(store: &dyn Store, runbook: &str) -> RunId {
    let (id, status) = store
        .insert_run(&new_run(runbook, Admission::Free, t0()))
        .await
        .expect("run recorded");
    assert_eq!(status, RunStatus::Queued);
    id
}

/// Start `run`'s next attempt as `owner` at `at`, with a 30 s lease; it must start.
async fn started(store: &dyn Store, run: RunId, owner: &str, at: DateTime<Utc>) -> Lease {
    store
        .start_attempt(run, owner, at, at + secs(30))
        .await
        .expect("the store answers")
        .expect("the attempt starts")
}

async fn status_of(store: &dyn Store, run: RunId) -> RunStatus {
    store.run_detail(run).await.unwrap().unwrap().run.status
}

fn slot_run(at: DateTime<Utc>, admission: Admission) -> NewRun {
    NewRun {
        trigger_kind: TriggerKind::Every,
        trigger_key: Some("every 1m".into()),
        scheduled_at: Some(at),
        ..new_run("tick", admission, at)
    }
}

fn slots(at: DateTime<Utc>, admission: Admission) -> SlotBatch {
    SlotBatch {
        runs: vec![slot_run(at, admission)],
        missed: vec![],
        runbook: "tick".into(),
        trigger_key: "every 1m".into(),
        mark: at,
        now: at,
    }
}

#[test]
fn a_slot_makes_one_run_whoever_records_it() {
    each_store(|store| async move {
        let batch = slots(t0(), Admission::Free);
        let (a, b) = tokio::join!(store.record_slots(&batch), store.record_slots(&batch));
        let mut results = [a.unwrap(), b.unwrap()].concat();
        results.sort_by_key(|r| matches!(r, SlotResult::Duplicate(_)));
        assert!(matches!(results[0], SlotResult::Created(_, at) if at == t0()));
        assert_eq!(results[1], SlotResult::Duplicate(t0()));
        let runs = store
            .list_runs(&RunFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].scheduled_at, Some(t0()));
        assert_eq!(
            store.schedule_mark("tick", "every 1m").await.unwrap(),
            Some(t0())
        );
    });
}

#[test]
fn under_forbid_a_slot_is_skipped_while_a_run_is_active_and_a_person_is_refused() {
    each_store(|store| async move {
        let first = store
            .record_slots(&slots(t0(), Admission::SkipIfActive))
            .await
            .unwrap();
        assert!(matches!(first[0], SlotResult::Created(..)));
        let next = store
            .record_slots(&slots(t0() + secs(60), Admission::SkipIfActive))
            .await
            .unwrap();
        let SlotResult::Skipped(id, _) = next[0] else {
            panic!("not skipped: {next:?}")
        };
        assert_eq!(status_of(store.as_ref(), id).await, RunStatus::Skipped);
        let refused = store
            .insert_run(&new_run("tick", Admission::RefuseIfActive, t0()))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
    });
}

#[test]
fn a_queued_run_is_started_by_one_owner_only() {
    each_store(|store| async move {
        let run = queued(store.as_ref(), "job").await;
        let until = t0() + secs(30);
        let (a, b) = tokio::join!(
            store.start_attempt(run, "node-a", t0(), until),
            store.start_attempt(run, "node-b", t0(), until)
        );
        let started: Vec<Lease> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
        assert_eq!(started.len(), 1, "both owners started the run");
        assert_eq!(started[0].number, 1);
        assert_eq!(status_of(store.as_ref(), run).await, RunStatus::Running);
        // The runbook's slot (`queue`/`replace`) is claimed once too.
        let (x, y) = (
            queued(store.as_ref(), "serial").await,
            queued(store.as_ref(), "serial").await,
        );
        assert!(store.claim(x, "serial").await.unwrap());
        assert!(!store.claim(y, "serial").await.unwrap());
    });
}

/// Start an attempt early; `Some(lease)` once its start is on disk, `None`
/// when the store found the run not startable (at once, or once written).
async fn started_early(store: &dyn Store, run: RunId, number: u32, owner: &str) -> Option<Lease> {
    let early = store
        .start_attempt_early(run, number, owner, t0(), t0() + secs(30))
        .await
        .expect("the store answers");
    let (lease, starting) = early?;
    let on_disk = async { starting.made().await?.wait().await };
    match on_disk.await {
        Ok(()) => Some(lease),
        Err(StoreError::Conflict(_)) => None,
        Err(e) => panic!("the start was not written: {e}"),
    }
}

#[test]
fn an_early_start_is_kept_only_for_a_startable_run_and_under_its_own_lease() {
    each_store(|store| async move {
        let run = queued(store.as_ref(), "job").await;
        let lease = started_early(store.as_ref(), run, 1, "node-a")
            .await
            .unwrap();
        assert_eq!((lease.run, lease.number), (run, 1));
        // The lease is the one recorded: it fences the run's writes.
        let detail = store.run_detail(run).await.unwrap().unwrap();
        let recorded: Vec<_> = detail.attempts.iter().map(|a| (a.id, a.attempt)).collect();
        assert_eq!(recorded, [(lease.attempt, 1)]);
        assert!(!store.heartbeat(&lease, t0() + secs(40)).await.unwrap());
        // A second owner, and a start that expects another attempt count,
        // find the run not startable; nothing of theirs is kept.
        assert_eq!(started_early(store.as_ref(), run, 2, "node-b").await, None);
        let other = queued(store.as_ref(), "job").await;
        assert_eq!(
            started_early(store.as_ref(), other, 2, "node-a").await,
            None
        );
        assert_eq!(status_of(store.as_ref(), other).await, RunStatus::Queued);
        let end = RunEnd {
            status: RunStatus::Succeeded,
            output: None,
            error: None,
            at: t0(),
        };
        store.finish(&lease, None, &[], &end).await.unwrap();
        assert_eq!(started_early(store.as_ref(), run, 2, "node-a").await, None);
        let detail = store.run_detail(run).await.unwrap().unwrap();
        assert_eq!(
            (detail.run.status, detail.attempts.len()),
            (RunStatus::Succeeded, 1)
        );
    });
}

#[test]
fn a_lease_expires_unless_renewed_and_recovery_takes_back_only_expired_runs() {
    each_store(|store| async move {
        let run = queued(store.as_ref(), "job").await;
        let lease = started(store.as_ref(), run, "node-a", t0()).await;
        assert!(
            store
                .recover(t0() + secs(29), t0())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(!store.heartbeat(&lease, t0() + secs(60)).await.unwrap());
        assert!(
            store
                .recover(t0() + secs(45), t0())
                .await
                .unwrap()
                .is_empty()
        );
        let rescued = store
            .recover(t0() + secs(61), t0() + secs(61))
            .await
            .unwrap();
        assert_eq!(rescued.iter().map(|r| r.id).collect::<Vec<_>>(), vec![run]);
        let detail = store.run_detail(run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Interrupted);
        assert_eq!(detail.attempts[0].status, RunStatus::Interrupted);
        // Queued again, another owner runs it as attempt 2.
        assert!(store.requeue(run, None).await.unwrap());
        let next = store
            .start_attempt(run, "node-b", t0() + secs(62), t0() + secs(92))
            .await;
        assert_eq!(next.unwrap().unwrap().number, 2);
    });
}

#[test]
fn an_owner_that_lost_its_lease_changes_nothing() {
    each_store(|store| async move {
        let run = queued(store.as_ref(), "job").await;
        let stale = started(store.as_ref(), run, "node-a", t0()).await;
        store
            .recover(t0() + secs(31), t0() + secs(31))
            .await
            .unwrap();
        store.requeue(run, None).await.unwrap();
        let fresh = started(store.as_ref(), run, "node-b", t0() + secs(32)).await;
        let fenced = |r: Result<()>| assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
        let line = LogRow {
            run_id: run,
            attempt: 1,
            step: None,
            at: t0(),
            level: "info".into(),
            message: "late".into(),
        };
        let step = StepRow {
            attempt_id: stale.attempt,
            position: 0,
            name: "late".into(),
            status: RunStatus::Succeeded,
            started_at: t0(),
            finished_at: t0(),
            output: None,
            error: None,
        };
        let end = RunEnd {
            status: RunStatus::Succeeded,
            output: None,
            error: None,
            at: t0(),
        };
        fenced(store.insert_logs(&stale, std::slice::from_ref(&line)).await);
        fenced(store.insert_step(&stale, &step, &[]).await);
        fenced(store.heartbeat(&stale, t0() + secs(90)).await.map(|_| ()));
        fenced(
            store
                .finish(&stale, Some(&step), std::slice::from_ref(&line), &end)
                .await,
        );
        fenced(
            store
                .finish_attempt(&stale, RunStatus::Failed, None, t0())
                .await,
        );
        let fence = Some(&stale);
        fenced(
            store
                .state_set(fence, "job", "k", &json!(1), None, t0())
                .await,
        );
        let issue = IssueOpen {
            runbook: "job".into(),
            key: "late".into(),
            title: "late".into(),
            severity: Severity::High,
            details: None,
            link: None,
            at: t0(),
        };
        assert!(matches!(
            store.open_issue(fence, &issue).await,
            Err(StoreError::Fenced { .. })
        ));
        let email = email("late");
        assert!(matches!(
            store.queue_email(fence, &email).await,
            Err(StoreError::Fenced { .. })
        ));
        // Nothing of the stale owner's was kept; the new owner's run goes on.
        let detail = store.run_detail(run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Running);
        assert!(detail.logs.is_empty() && detail.steps.is_empty());
        assert_eq!(store.state_get("job", "k", t0()).await.unwrap(), None);
        assert_eq!(store.issue("late").await.unwrap(), None);
        assert!(store.list_emails(None, 10).await.unwrap().is_empty());
        // The new owner's last step is written with the run's end.
        let last = StepRow {
            attempt_id: fresh.attempt,
            name: "last".into(),
            ..step
        };
        store.finish(&fresh, Some(&last), &[], &end).await.unwrap();
        let detail = store.run_detail(run).await.unwrap().unwrap();
        assert_eq!(detail.run.status, RunStatus::Succeeded);
        let steps: Vec<_> = detail
            .steps
            .iter()
            .map(|s| (s.attempt_id, s.name.as_str(), s.status))
            .collect();
        assert_eq!(steps, [(fresh.attempt, "last", RunStatus::Succeeded)]);
    });
}

fn delivery(key: &str, at: DateTime<Utc>) -> Delivery {
    Delivery {
        runbook: "hook".into(),
        trigger_key: "webhook /hooks/x".into(),
        received_at: at,
        dedup_key: Some(key.into()),
        dedup_until: at + TimeDelta::hours(1),
        headers: json!({}),
        body: "{}".into(),
        fate: Fate::Run {
            run: NewRun {
                trigger_kind: TriggerKind::Webhook,
                trigger_key: Some("webhook /hooks/x".into()),
                ..new_run("hook", Admission::Free, at)
            },
            limit: None,
        },
    }
}

#[test]
fn a_delivery_repeated_within_its_window_is_a_duplicate_and_after_it_a_new_run() {
    each_store(|store| async move {
        let first = store
            .accept_deliveries(&[delivery("d-1", t0())])
            .await
            .unwrap();
        let Accepted::Run {
            run,
            delivery: original,
            ..
        } = first[0]
        else {
            panic!("{first:?}")
        };
        let (x, y) = (
            [delivery("d-1", t0() + secs(5))],
            [delivery("d-1", t0() + secs(6))],
        );
        let (a, b) = tokio::join!(store.accept_deliveries(&x), store.accept_deliveries(&y));
        for repeat in [a.unwrap()[0], b.unwrap()[0]] {
            assert_eq!(
                repeat,
                match repeat {
                    Accepted::Duplicate { delivery, .. } => Accepted::Duplicate {
                        delivery,
                        original,
                        run: Some(run)
                    },
                    other => panic!("not a duplicate: {other:?}"),
                }
            );
        }
        let later = store
            .accept_deliveries(&[delivery("d-1", t0() + TimeDelta::hours(2))])
            .await;
        assert!(matches!(later.unwrap()[0], Accepted::Run { run: r, .. } if r != run));
        let runs = store
            .list_runs(&RunFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(runs.len(), 2);
    });
}

/// A delivery of runbook `hook` whose run is admitted as `admission`, under `limit`.
fn delivery_as(
    key: Option<&str>,
    admission: Admission,
    limit: Option<(u32, DateTime<Utc>)>,
) -> Delivery {
    let d = delivery(key.unwrap_or_default(), t0());
    let run = NewRun {
        trigger_kind: TriggerKind::Webhook,
        trigger_key: Some("webhook /hooks/x".into()),
        ..new_run("hook", admission, t0())
    };
    Delivery {
        dedup_key: key.map(str::to_string),
        fate: Fate::Run { run, limit },
        ..d
    }
}

#[test]
fn a_batch_records_every_delivery_in_order_whatever_its_fate_and_repeats_within_it() {
    each_store(|store| async move {
        let filtered = Delivery {
            fate: Fate::Record {
                outcome: DeliveryOutcome::Filtered,
                detail: "when: was false".into(),
            },
            ..delivery("d-3", t0())
        };
        let limit = Some((1, t0() - secs(60)));
        let batch = [
            delivery("d-1", t0()),
            delivery("d-2", t0()),
            delivery("d-1", t0() + secs(1)),
            filtered,
            delivery_as(Some("d-4"), Admission::SkipIfActive, None),
            delivery_as(None, Admission::Free, limit),
            delivery_as(Some("d-1"), Admission::Free, limit),
            delivery_as(None, Admission::Queued, None),
        ];
        let got = store.accept_deliveries(&batch).await.unwrap();
        let Accepted::Run {
            delivery: d,
            run: r,
            ..
        } = got[0]
        else {
            panic!("{got:?}")
        };
        let run = |i: i64, n: i64, status| Accepted::Run {
            delivery: d + i,
            run: r + n,
            status,
        };
        let (queued, throttled) = (RunStatus::Queued, RunStatus::Throttled);
        let repeat = |i: i64| Accepted::Duplicate {
            delivery: d + i,
            original: d,
            run: Some(r),
        };
        let want = vec![
            run(0, 0, queued),
            run(1, 1, queued),
            repeat(2),
            Accepted::Recorded { delivery: d + 3 },
            run(4, 2, queued),
            run(5, 3, throttled),
            repeat(6),
            run(7, 4, queued),
        ];
        assert_eq!(got, want);
        // A key held by an earlier batch makes a repeat too.
        let again = store
            .accept_deliveries(&[delivery("d-2", t0() + secs(2))])
            .await
            .unwrap();
        let held = Accepted::Duplicate {
            delivery: d + 8,
            original: d + 1,
            run: Some(r + 1),
        };
        assert_eq!(again, [held]);
        // Each delivery names its run, and each run its delivery.
        let listed = store.list_deliveries(Some("hook"), None, 20).await.unwrap();
        let named: Vec<_> = listed
            .iter()
            .rev()
            .map(|l| (l.id, l.run_id, l.duplicate_of))
            .collect();
        let linked = [
            (d, Some(r), None),
            (d + 1, Some(r + 1), None),
            (d + 2, Some(r), Some(d)),
            (d + 3, None, None),
            (d + 4, Some(r + 2), None),
            (d + 5, Some(r + 3), None),
            (d + 6, Some(r), Some(d)),
            (d + 7, Some(r + 4), None),
            (d + 8, Some(r + 1), Some(d + 1)),
        ];
        assert_eq!(named, linked);
        let runs = store
            .list_runs(&RunFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let from: Vec<_> = runs
            .iter()
            .rev()
            .map(|run| (run.id, run.trigger_data["delivery_id"].as_i64()))
            .collect();
        let each = [
            (r, d),
            (r + 1, d + 1),
            (r + 2, d + 4),
            (r + 3, d + 5),
            (r + 4, d + 7),
        ];
        assert_eq!(from, each.map(|(r, d)| (r, Some(d))));
    });
}

fn email(key: &str) -> NewEmail {
    NewEmail {
        idem_key: key.into(),
        runbook: "job".into(),
        run_id: None,
        sender: "runbookd@example.com".into(),
        to: vec!["ops@example.com".into()],
        cc: vec![],
        subject: "hello".into(),
        text: Some("body".into()),
        html: None,
        message_id: format!("<{key}@example.com>"),
        at: t0(),
    }
}

#[test]
fn an_email_is_queued_once_per_key_and_taken_once() {
    each_store(|store| async move {
        let (id, new) = store
            .queue_email(None, &email("digest 2026-03-01"))
            .await
            .unwrap();
        assert!(new);
        assert_eq!(
            store
                .queue_email(None, &email("digest 2026-03-01"))
                .await
                .unwrap(),
            (id, false)
        );
        let (a, b) = tokio::join!(
            store.take_due_emails(t0(), 10),
            store.take_due_emails(t0(), 10)
        );
        let taken: Vec<i64> = [a.unwrap(), b.unwrap()]
            .concat()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(taken, vec![id]);
        let all = store.list_emails(None, 10).await.unwrap();
        assert_eq!((all.len(), all[0].status), (1, EmailStatus::Sending));
    });
}

fn recipient(status: RecipientStatus, reply: &str) -> RecipientResult {
    RecipientResult {
        status,
        reply: reply.into(),
        attempts: 1,
        ambiguous: 0,
    }
}

#[test]
fn an_email_keeps_its_message_id_and_each_recipients_result_and_a_held_attempt_is_not_counted() {
    each_store(|store| async move {
        let mut new = email("weekly");
        new.to = vec!["ana@example.com".into(), "bo@example.com".into()];
        let (id, _) = store.queue_email(None, &new).await.unwrap();
        let taken = store.take_due_emails(t0(), 10).await.unwrap().remove(0);
        let held = EmailAttempt {
            status: EmailStatus::Queued,
            results: Recipients::new(),
            error: Some("held: login refused".into()),
            retry_at: Some(t0() + secs(900)),
            counted: false,
        };
        assert!(store.finish_email(&taken, &held, t0()).await.unwrap());
        let row = &store.list_emails(None, 10).await.unwrap()[0];
        assert_eq!(
            (row.status, row.attempts, row.next_attempt_at, row.sent_at),
            (EmailStatus::Queued, 0, t0() + secs(900), None)
        );
        assert!(
            store
                .take_due_emails(t0() + secs(899), 10)
                .await
                .unwrap()
                .is_empty()
        );

        let taken = store
            .take_due_emails(t0() + secs(900), 10)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (taken.attempts, taken.message_id.as_str()),
            (1, "<weekly@example.com>")
        );
        let results: Recipients = [
            (
                "ana@example.com".to_string(),
                recipient(RecipientStatus::Sent, "250 OK"),
            ),
            (
                "bo@example.com".to_string(),
                recipient(RecipientStatus::Failed, "550 no such mailbox"),
            ),
        ]
        .into();
        let partial = EmailAttempt {
            status: EmailStatus::Partial,
            results: results.clone(),
            error: Some("bo@example.com: failed — 550 no such mailbox".into()),
            retry_at: None,
            counted: true,
        };
        let at = t0() + secs(901);
        assert!(store.finish_email(&taken, &partial, at).await.unwrap());
        assert!(
            !store.finish_email(&taken, &partial, at).await.unwrap(),
            "recorded once"
        );
        let row = store
            .list_emails(Some(EmailStatus::Partial), 10)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (
                row.id,
                row.attempts,
                row.sent_at,
                row.results,
                row.last_error,
                row.message_id
            ),
            (
                id,
                1,
                Some(at),
                results,
                partial.error,
                "<weekly@example.com>".to_string()
            )
        );
    });
}

#[test]
fn an_issue_opens_bumps_resolves_and_reopens() {
    each_store(|store| async move {
        let mut open = IssueOpen {
            runbook: "job".into(),
            key: "disk".into(),
            title: "disk full".into(),
            severity: Severity::High,
            details: Some("95%".into()),
            link: None,
            at: t0(),
        };
        let (row, new) = store.open_issue(None, &open).await.unwrap();
        assert!(new);
        assert_eq!((row.status, row.occurrences), (IssueStatus::Open, 1));
        open.at = t0() + secs(60);
        let (row, new) = store.open_issue(None, &open).await.unwrap();
        assert!(!new);
        assert_eq!(
            (row.occurrences, row.first_seen, row.last_seen),
            (2, t0(), t0() + secs(60))
        );
        assert!(
            store
                .resolve_issue(None, "disk", Some("freed"), t0() + secs(90))
                .await
                .unwrap()
        );
        assert!(
            !store
                .resolve_issue(None, "disk", None, t0() + secs(91))
                .await
                .unwrap()
        );
        let resolved = store.issue("disk").await.unwrap().unwrap();
        assert_eq!(
            (resolved.status, resolved.resolution.as_deref()),
            (IssueStatus::Resolved, Some("freed"))
        );
        open.at = t0() + secs(120);
        let (row, _) = store.open_issue(None, &open).await.unwrap();
        assert_eq!(
            (row.status, row.resolution, row.resolved_at),
            (IssueStatus::Open, None, None)
        );
        assert_eq!(
            store.open_issue_counts().await.unwrap(),
            vec![(Severity::High, 1)]
        );
    });
}

#[test]
fn a_state_value_lives_until_its_expiry() {
    each_store(|store| async move {
        let until = Some(t0() + secs(10));
        store
            .state_set(None, "job", "seen", &json!({"n": 1}), until, t0())
            .await
            .unwrap();
        assert_eq!(
            store
                .state_get("job", "seen", t0() + secs(9))
                .await
                .unwrap(),
            Some(json!({"n": 1}))
        );
        assert_eq!(
            store
                .state_get("job", "seen", t0() + secs(10))
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.state_get("other", "seen", t0()).await.unwrap(), None);
        assert!(store.state_delete(None, "job", "seen").await.unwrap());
    });
}

#[test]
fn retention_deletes_only_finished_runs_older_than_the_cutoff() {
    each_store(|store| async move {
        let old_done = queued(store.as_ref(), "job").await;
        let lease = started(store.as_ref(), old_done, "n", t0()).await;
        let end = RunEnd {
            status: RunStatus::Succeeded,
            output: None,
            error: None,
            at: t0(),
        };
        store.finish(&lease, None, &[], &end).await.unwrap();
        let old_waiting = queued(store.as_ref(), "job").await;
        let (recent, _) = store
            .insert_run(&new_run("job", Admission::Free, t0() + TimeDelta::days(2)))
            .await
            .unwrap();
        assert_eq!(store.prune(t0() + TimeDelta::days(1)).await.unwrap(), 1);
        let left: Vec<RunId> = store
            .list_runs(&RunFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, vec![recent, old_waiting]);
    });
}

#[test]
fn a_request_to_cancel_reaches_the_owner_at_its_heartbeat() {
    each_store(|store| async move {
        let older = queued(store.as_ref(), "job").await;
        let lease = started(store.as_ref(), older, "node-a", t0()).await;
        let other = queued(store.as_ref(), "other").await;
        let newer = queued(store.as_ref(), "job").await;
        // Only running runs of the runbook older than the newer one are asked.
        assert_eq!(store.request_cancel(Some("job"), newer).await.unwrap(), 1);
        assert_eq!(store.request_cancel(Some("job"), older).await.unwrap(), 0);
        assert_eq!(store.request_cancel(None, other).await.unwrap(), 0);
        assert!(store.heartbeat(&lease, t0() + secs(40)).await.unwrap());
        // A person's request names the run.
        let lease2 = started(store.as_ref(), other, "node-b", t0()).await;
        assert!(!store.heartbeat(&lease2, t0() + secs(40)).await.unwrap());
        assert_eq!(store.request_cancel(None, other).await.unwrap(), 1);
        assert!(store.heartbeat(&lease2, t0() + secs(50)).await.unwrap());
    });
}

#[test]
fn one_owner_leads_housekeeping_until_its_hold_expires() {
    each_store(|store| async move {
        let now = Utc::now();
        let lead = |owner: &'static str, until| {
            let store = store.clone();
            async move { store.lead_housekeeping(owner, until).await.unwrap() }
        };
        assert!(lead("node-a", now + secs(60)).await);
        // One writing process always leads; with several, one at a time.
        let shared = !store.sole_writer();
        assert_eq!(lead("node-b", now + secs(60)).await, !shared);
        if shared {
            assert!(lead("node-a", now - secs(1)).await, "renewed by its holder");
            assert!(
                lead("node-b", now + secs(60)).await,
                "taken over once expired"
            );
            assert!(!lead("node-a", now + secs(60)).await);
        }
    });
}

#[test]
fn free_text_with_a_nul_byte_is_recorded_not_refused() {
    each_store(|store| async move {
        // A NUL in a webhook body fails no batch (PostgreSQL stores U+FFFD).
        let plain = delivery("plain", t0());
        let odd = Delivery {
            body: "{\"a\":\"x\u{0}y\"}".into(),
            ..delivery("odd\u{0}key", t0())
        };
        let accepted = store.accept_deliveries(&[plain, odd]).await.unwrap();
        assert!(
            accepted.iter().all(|a| matches!(a, Accepted::Run { .. })),
            "{accepted:?}"
        );
        let listed = store.list_deliveries(Some("hook"), None, 10).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[0].body.starts_with("{\"a\":\"x"));
        let (issue, _) = store
            .open_issue(
                None,
                &IssueOpen {
                    runbook: "job".into(),
                    key: "nul".into(),
                    title: "a\u{0}b".into(),
                    severity: Severity::Low,
                    details: Some("d\u{0}".into()),
                    link: None,
                    at: t0(),
                },
            )
            .await
            .unwrap();
        assert!(issue.title.starts_with('a') && issue.title.ends_with('b'));
    });
}

#[test]
fn only_an_interrupted_run_is_queued_again_or_abandoned_even_when_its_runbook_is_taken() {
    each_store(|store| async move {
        let run = queued(store.as_ref(), "job").await;
        started(store.as_ref(), run, "node-a", t0()).await;
        // Still running: not queued again.
        assert!(!store.requeue(run, Some("job")).await.unwrap());
        store
            .recover(t0() + secs(31), t0() + secs(31))
            .await
            .unwrap();
        // Another run holds the runbook meanwhile: queued without its key.
        let other = queued(store.as_ref(), "job").await;
        assert!(store.claim(other, "job").await.unwrap());
        assert!(store.requeue(run, Some("job")).await.unwrap());
        assert_eq!(status_of(store.as_ref(), run).await, RunStatus::Queued);
        // Asked to stop before it was interrupted: it stays interrupted.
        let asked = queued(store.as_ref(), "solo").await;
        started(store.as_ref(), asked, "node-a", t0()).await;
        assert_eq!(store.request_cancel(None, asked).await.unwrap(), 1);
        store
            .recover(t0() + secs(31), t0() + secs(31))
            .await
            .unwrap();
        assert!(!store.requeue(asked, None).await.unwrap());
        assert_eq!(
            status_of(store.as_ref(), asked).await,
            RunStatus::Interrupted
        );
        // Given up on: abandoned, for good, and only from interrupted.
        let end = RunEnd {
            status: RunStatus::Abandoned,
            output: None,
            error: Some("interrupted too often".into()),
            at: t0() + secs(40),
        };
        assert!(
            !store
                .end_waiting(run, RunStatus::Interrupted, &end)
                .await
                .unwrap()
        );
        assert!(
            store
                .end_waiting(asked, RunStatus::Interrupted, &end)
                .await
                .unwrap()
        );
        assert_eq!(status_of(store.as_ref(), asked).await, RunStatus::Abandoned);
        assert!(!store.requeue(asked, None).await.unwrap());
        assert!(
            !store
                .end_waiting(asked, RunStatus::Interrupted, &end)
                .await
                .unwrap()
        );
    });
}
