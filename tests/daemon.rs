//! `runbookd serve` as a process: one run per slot, overlap under `forbid`,
//! crash recovery, graceful shutdown, hot reload.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::Deployment;
use common::daemon::Daemon;
use common::http::{client, send};
use runbookd::store::{RunRow, RunStatus};

const LIMIT: Duration = Duration::from_secs(30);

/// A script that waits `secs` without blocking the engine's limits: it polls
/// state (a store read) until its time is up.
fn busy(secs: f64) -> String {
    format!(
        "let end = now() + duration(\"{}ms\");\n      while now() < end {{ state::get(\"tick\"); }}\n",
        (secs * 1000.0) as u64
    )
}

/// No two of these runs were running at the same time.
fn assert_one_at_a_time(runs: &[RunRow]) {
    let mut spans: Vec<_> = runs
        .iter()
        .filter_map(|r| Some((r.started_at?, r.finished_at?)))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "two runs overlapped: {w:?}");
    }
}

/// Run a future to its end on a runtime of its own (these tests are sync:
/// the daemon is a separate process).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn of<'a>(runs: &'a [RunRow], runbook: &str) -> Vec<&'a RunRow> {
    runs.iter().filter(|r| r.runbook == runbook).collect()
}

#[test]
fn an_every_second_schedule_makes_exactly_one_run_per_slot() {
    let d = Deployment::new();
    d.runbook(
        "tick.yaml",
        "triggers:\n  - every: 1s\nrun: trigger.scheduled_at\n",
    );
    let mut daemon = Daemon::start(&d, &[]);
    daemon.wait_runs("five ticks", LIMIT, |r| {
        r.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 5
    });
    daemon.signal("TERM");
    let (code, _) = daemon.wait_exit(LIMIT);
    assert_eq!(code, Some(0));
    let runs = daemon.runs();
    assert!(runs.len() >= 5);
    let slots: Vec<_> = runs
        .iter()
        .map(|r| r.scheduled_at.expect("a scheduled run has its slot"))
        .collect();
    assert_eq!(
        slots.iter().collect::<HashSet<_>>().len(),
        slots.len(),
        "a slot ran twice: {slots:?}"
    );
    for w in slots.windows(2) {
        assert_eq!(
            w[1] - w[0],
            chrono::TimeDelta::seconds(1),
            "a slot was skipped or doubled: {slots:?}"
        );
    }
    for r in &runs {
        let slot = r.scheduled_at.unwrap();
        assert_eq!(
            slot.timestamp_subsec_millis(),
            0,
            "slots are aligned to whole seconds"
        );
        assert_eq!(
            (r.trigger_kind.as_str(), r.trigger_key.as_deref()),
            ("every", Some("every 1s"))
        );
        if r.status == RunStatus::Succeeded {
            // The script saw its own slot.
            assert_eq!(
                r.output,
                Some(serde_json::json!(
                    slot.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                ))
            );
        }
    }
}

#[test]
fn forbid_records_overlapping_slots_as_skipped() {
    let d = Deployment::new();
    d.runbook(
        "slow.yaml",
        &format!(
            "triggers:\n  - every: 1s\nrun: |\n      {}      \"done\"\n",
            busy(2.5)
        ),
    );
    let daemon = Daemon::start(&d, &[]);
    let runs = daemon.wait_runs("a skipped slot after a finished run", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Skipped)
            && r.iter().any(|r| r.status == RunStatus::Succeeded)
    });
    let done: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .collect();
    let skipped: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    // Every skipped slot came while the first run was active.
    let first = done[0];
    for s in &skipped {
        let slot = s.scheduled_at.unwrap();
        assert!(
            slot > first.scheduled_at.unwrap(),
            "{slot} before the active run's slot"
        );
        assert!(s.started_at.is_none() && s.finished_at.is_some());
    }
    // Runs never overlapped.
    assert_one_at_a_time(&runs);
    assert!(
        daemon
            .text()
            .contains("slot skipped: the previous run is still active (concurrency: forbid)")
    );
}

#[test]
fn a_killed_daemon_leaves_no_run_running_and_the_run_is_retried() {
    let d = Deployment::new();
    d.runbook(
        "tick.yaml",
        &format!(
            "triggers:\n  - every: 1s\nconcurrency: allow\nretry: {{ attempts: 2, delay: 0s }}\nrun: |\n      if run.attempt == 1 {{ {} }}\n      1\n",
            busy(3.0).trim_end()
        ),
    );
    let mut daemon = Daemon::start(&d, &[]);
    let runs = daemon.wait_runs("a running tick", LIMIT, |r| {
        r.iter()
            .any(|r| r.runbook == "tick" && r.status == RunStatus::Running)
    });
    let victim = of(&runs, "tick")
        .into_iter()
        .find(|r| r.status == RunStatus::Running)
        .unwrap()
        .id;
    daemon.signal("KILL");
    daemon.wait_exit(LIMIT);
    assert_eq!(
        daemon
            .runs()
            .iter()
            .find(|r| r.id == victim)
            .unwrap()
            .status,
        RunStatus::Running,
        "the record still says running"
    );

    let daemon = Daemon::start(&d, &[]);
    assert!(daemon.text().contains("recovered"), "{}", daemon.text());
    daemon.wait_runs("the interrupted run retried to success", LIMIT, |r| {
        r.iter()
            .any(|r| r.id == victim && r.status == RunStatus::Succeeded)
    });
    let detail = block_on(async {
        let store = runbookd::store::open(
            &format!("sqlite://{}", d.db().display()),
            runbookd::store::Access::Read,
        )
        .await
        .unwrap();
        store.run_detail(victim).await.unwrap().unwrap()
    });
    let attempts: Vec<_> = detail
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status))
        .collect();
    assert_eq!(
        attempts,
        [(1, RunStatus::Interrupted), (2, RunStatus::Succeeded)]
    );
}

#[test]
fn sigterm_lets_runs_finish_within_the_grace_then_interrupts() {
    let d = Deployment::new();
    d.runbook(
        "long.yaml",
        &format!(
            "triggers:\n  - every: 1s\nrun: |\n      {}      \"finished\"\n",
            busy(60.0)
        ),
    );
    let mut daemon = Daemon::start(&d, &[("RUNBOOKD_SHUTDOWN_GRACE", "1500ms")]);
    let runs = daemon.wait_runs("a running run", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Running)
    });
    let id = runs
        .iter()
        .find(|r| r.status == RunStatus::Running)
        .unwrap()
        .id;
    daemon.signal("TERM");
    let (code, took) = daemon.wait_exit(LIMIT);
    assert_eq!(code, Some(0));
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "exited after {took:?}"
    );
    let runs = daemon.runs();
    // Interrupted by the shutdown, it waits queued for the next start.
    let run = runs.iter().find(|r| r.id == id).unwrap();
    assert_eq!(
        (run.status, run.attempts),
        (RunStatus::Queued, 1),
        "{run:?}"
    );
    assert!(runs.iter().all(|r| r.status != RunStatus::Running));
    assert!(
        daemon
            .text()
            .contains("shutting down: waiting up to 1s 500ms for 1 running run(s)"),
        "{}",
        daemon.text()
    );
}

#[test]
fn an_invalid_edit_keeps_the_last_good_version_also_across_a_crash_and_a_deleted_runbook_stops() {
    let d = Deployment::new();
    d.runbook(
        "versioned.yaml",
        "triggers:\n  - every: 1s\nrun: '\"v1\"'\n",
    );
    d.runbook("clock.yaml", "triggers:\n  - every: 1s\nrun: '1'\n");
    let mut daemon = Daemon::start(&d, &[]);
    let with = |out: &'static str| {
        move |r: &[RunRow]| r.iter().any(|r| r.output == Some(serde_json::json!(out)))
    };
    daemon.wait_runs("v1 runs", LIMIT, with("v1"));

    let mark = daemon.line_count();
    d.runbook("versioned.yaml", "triggers:\n  - every: 1s\nrun: '\"v2\"\n");
    daemon.wait_for_line(
        "its file has errors; the last good version keeps running",
        LIMIT,
    );
    assert!(
        daemon
            .lines_since(mark)
            .iter()
            .any(|l| l.contains("runbooks/versioned.yaml:3:6")),
        "{}",
        daemon.text()
    );
    let before = daemon.runs().iter().map(|r| r.id).max().unwrap();
    let runs = daemon.wait_runs("v1 still runs after the broken edit", LIMIT, |r| {
        r.iter()
            .filter(|r| {
                r.runbook == "versioned" && r.id > before && r.status == RunStatus::Succeeded
            })
            .count()
            >= 2
    });
    assert!(
        of(&runs, "versioned")
            .iter()
            .filter(|r| r.id > before && r.status == RunStatus::Succeeded)
            .all(|r| r.output == Some(serde_json::json!("v1")))
    );

    // A crash while the file is broken (as if half-written): the next start
    // runs the version last loaded from it, kept in the database, and says so.
    daemon.signal("KILL");
    daemon.wait_exit(LIMIT);
    let last_v1 = of(&runs, "versioned").last().unwrap().version_hash.clone();
    let kept = block_on(async { d.store().await.version(&last_v1).await.unwrap().unwrap() });
    let daemon = Daemon::start(&d, &[]);
    let banner = daemon.text();
    let warning = format!(
        "    warning: {}:1:1: the file has errors; runbook versioned runs the version last loaded from it (saved {}), kept in the database, until the file is fixed",
        kept.path,
        kept.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    assert!(banner.lines().any(|l| l == warning), "{banner}");
    assert!(
        banner
            .lines()
            .any(|l| l.starts_with("    error: ") && l.contains("runbooks/versioned.yaml:3:6")),
        "{banner}"
    );
    let restarted = daemon.runs().iter().map(|r| r.id).max().unwrap();
    daemon.wait_runs("v1 runs after the restart", LIMIT, |r| {
        r.iter().any(|r| {
            r.runbook == "versioned"
                && r.id > restarted
                && r.status == RunStatus::Succeeded
                && r.output == Some(serde_json::json!("v1"))
                && r.version_hash == last_v1
        })
    });

    // The version last loaded, not the last that ran: an edit that disabled
    // the runbook, then a broken edit and a crash, keep it disabled.
    let mut daemon = daemon;
    d.runbook(
        "versioned.yaml",
        "enabled: false\ntriggers:\n  - every: 1s\nrun: '\"v1\"'\n",
    );
    daemon.wait_for_line("changed=[\"versioned\"]", LIMIT);
    d.runbook("versioned.yaml", "triggers:\n  - every: 1s\nrun: '\"v2\"\n");
    daemon.wait_for_line("its file has errors", LIMIT);
    daemon.signal("KILL");
    daemon.wait_exit(LIMIT);
    let disabled = block_on(async {
        let store = d.store().await;
        store
            .latest_version_from(&kept.path)
            .await
            .unwrap()
            .unwrap()
    });
    assert!(
        disabled.yaml.starts_with("enabled: false"),
        "{}",
        disabled.yaml
    );
    let daemon = Daemon::start(&d, &[]);
    let banner = daemon.text();
    assert!(
        banner.contains(&format!(
            "runbook versioned runs the version last loaded from it (saved {})",
            disabled.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        )),
        "{banner}"
    );
    let restarted = daemon.runs().iter().map(|r| r.id).max().unwrap();
    let runs = daemon.wait_runs("three clock runs", LIMIT, |r| {
        r.iter()
            .filter(|r| r.runbook == "clock" && r.id > restarted)
            .count()
            >= 3
    });
    assert!(
        !runs
            .iter()
            .any(|r| r.runbook == "versioned" && r.id > restarted),
        "the disabled version fired"
    );

    d.runbook(
        "versioned.yaml",
        "triggers:\n  - every: 1s\nrun: '\"v2\"'\n",
    );
    daemon.wait_runs("v2 runs after the fix", LIMIT, with("v2"));

    std::fs::remove_file(d.runbooks().join("versioned.yaml")).unwrap();
    daemon.wait_for_line("removed=[\"versioned\"]", LIMIT);
    let last = daemon
        .runs()
        .iter()
        .filter(|r| r.runbook == "versioned")
        .map(|r| r.id)
        .max()
        .unwrap();
    let after = daemon.runs().iter().map(|r| r.id).max().unwrap();
    // Three more slots of the other runbook pass with no new run of the deleted one.
    let runs = daemon.wait_runs("three more clock runs", LIMIT, |r| {
        r.iter()
            .filter(|r| r.runbook == "clock" && r.id > after)
            .count()
            >= 3
    });
    let newest_versioned = runs
        .iter()
        .filter(|r| r.runbook == "versioned")
        .map(|r| r.id)
        .max()
        .unwrap();
    assert!(
        newest_versioned <= last + 1,
        "the deleted runbook kept running"
    );
    // Its history stays.
    assert!(of(&runs, "versioned").len() >= 3);
}

#[test]
fn a_second_file_with_an_active_runbooks_name_is_the_error_on_reload_and_at_start() {
    let d = Deployment::new();
    // The newcomer sorts first: file order must not decide who owns the name.
    d.runbook("zz-original.yaml", "name: same\nrun: '\"original\"'\n");
    let mut daemon = Daemon::start(&d, &[]);
    let run = |daemon: &Daemon| {
        let url = format!("{}/api/v1/runbooks/same/runs?wait=true", daemon.url);
        let done = send(client().post(url));
        (done.status, done.body["run"]["output"].clone())
    };
    assert_eq!(run(&daemon), (200, serde_json::json!("original")));

    d.runbook("aa-copy.yaml", "name: same\nrun: '\"copy\"'\n");
    let error = "runbooks/aa-copy.yaml:1:1: runbook name \"same\" is already used by \
                 runbooks/zz-original.yaml; runbooks/aa-copy.yaml is not loaded \
                 (give one of them another `name:`)";
    let reloaded = send(client().post(format!("{}/api/v1/reload", daemon.url)));
    assert_eq!(
        reloaded.body,
        serde_json::json!({"runbooks": 1, "errors": [error]})
    );
    assert_eq!(run(&daemon), (200, serde_json::json!("original")));

    // At the next start the file of the latest run is the active one.
    daemon.signal("TERM");
    daemon.wait_exit(LIMIT);
    let daemon = Daemon::start(&d, &[]);
    assert!(daemon.text().contains(error), "{}", daemon.text());
    assert_eq!(run(&daemon), (200, serde_json::json!("original")));
}

#[test]
fn a_script_nesting_a_value_deeply_fails_its_run_and_the_daemon_survives() {
    let d = Deployment::new();
    // The value is printed, concatenated, compared and returned: each walks
    // every level, and used to overflow the stack and abort the daemon.
    d.runbook(
        "deep.yaml",
        "run: |\n  let a = [];\n  for i in 0..6000 { a = [a]; }\n  let s = \"\" + a;\n  print(a);\n  let same = a == a;\n  a\n",
    );
    d.runbook("after.yaml", "run: '\"still here\"'\n");
    let daemon = Daemon::start(&d, &[]);
    let run = |name: &str| {
        let url = format!("{}/api/v1/runbooks/{name}/runs?wait=true", daemon.url);
        let done = send(client().post(url));
        let run = &done.body["run"];
        (
            done.status,
            run["status"].clone(),
            run["error"].clone(),
            run["output"].clone(),
        )
    };
    assert_eq!(
        run("deep"),
        (
            200,
            serde_json::json!("failed"),
            serde_json::json!("step main: value nested more than 64 levels deep"),
            serde_json::Value::Null
        )
    );
    assert_eq!(
        run("after"),
        (
            200,
            serde_json::json!("succeeded"),
            serde_json::Value::Null,
            serde_json::json!("still here")
        )
    );
}

#[test]
fn after_an_outage_the_latest_missed_slot_runs_and_the_others_are_recorded_missed() {
    let d = Deployment::new();
    d.runbook(
        "minutely.yaml",
        "triggers:\n  - every: 1m\nrun: trigger.scheduled_at\n",
    );
    d.runbook(
        "skipper.yaml",
        "triggers:\n  - every: 1m\ncatch_up: skip\nrun: '1'\n",
    );
    // The previous daemon accounted for slots up to ten minutes ago, then stopped.
    let outage_start = {
        let now = chrono::Utc::now();
        let start = now - chrono::TimeDelta::minutes(10);
        block_on(async {
            let store = d.store().await;
            store
                .init_mark("minutely", "every 1m", start)
                .await
                .unwrap();
            store.init_mark("skipper", "every 1m", start).await.unwrap();
        });
        start
    };
    let daemon = Daemon::start(&d, &[]);
    // Both triggers have been evaluated once the minutely run succeeded and
    // the skipper's outage is on record.
    let runs = daemon.wait_runs("the catch-up run", LIMIT, |r| {
        r.iter()
            .any(|r| r.runbook == "minutely" && r.status == RunStatus::Succeeded)
            && r.iter()
                .filter(|r| r.runbook == "skipper" && r.status == RunStatus::Missed)
                .count()
                >= 9
    });
    let minutely = of(&runs, "minutely");
    let missed: Vec<_> = minutely
        .iter()
        .filter(|r| r.status == RunStatus::Missed)
        .collect();
    let ran: Vec<_> = minutely
        .iter()
        .filter(|r| r.status != RunStatus::Missed)
        .collect();
    assert_eq!(ran.len(), 1, "{minutely:?}");
    assert!((9..=10).contains(&missed.len()), "{} missed", missed.len());
    assert!(missed.iter().all(|m| m.scheduled_at.unwrap() > outage_start && m.scheduled_at < ran[0].scheduled_at));
    // `skip` runs nothing late: only a slot less than a minute late runs.
    let skipper = of(&runs, "skipper");
    let late =
        |r: &&&RunRow| r.created_at - r.scheduled_at.unwrap() >= chrono::TimeDelta::seconds(60);
    assert!(
        skipper
            .iter()
            .filter(late)
            .all(|r| r.status == RunStatus::Missed),
        "{skipper:?}"
    );
    assert!(
        skipper
            .iter()
            .filter(|r| r.status == RunStatus::Missed)
            .count()
            >= 9,
        "{skipper:?}"
    );
    assert!(
        daemon
            .text()
            .contains("slots missed while the clock moved or the daemon was not running")
    );
}

#[test]
fn queue_runs_overlapping_slots_one_after_another() {
    let d = Deployment::new();
    d.runbook(
        "queued.yaml",
        &format!(
            "triggers:\n  - every: 1s\nconcurrency: queue\nrun: |\n      {}      run.id\n",
            busy(1.5)
        ),
    );
    let daemon = Daemon::start(&d, &[]);
    let runs = daemon.wait_runs("three queued runs done", LIMIT, |r| {
        r.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 3
    });
    assert!(
        runs.iter().all(|r| r.status != RunStatus::Skipped),
        "queue skips nothing"
    );
    assert!(
        runs.iter().any(|r| r.status == RunStatus::Queued),
        "later slots wait their turn"
    );
    assert_one_at_a_time(&runs);
}

/// More queued work than the dispatcher starts at once (it starts 1,000 and
/// reads on as runs end): every run runs once, and a `queue` runbook's runs
/// still run one at a time in the order they were queued.
#[test]
fn a_backlog_larger_than_the_dispatcher_takes_at_once_runs_once_each_in_order() {
    let d = Deployment::new();
    d.runbook("bulk.yaml", "concurrency: allow\nrun: run.id\n");
    d.runbook("inline.yaml", "concurrency: queue\nrun: run.id\n");
    let (bulk, inline) = (1_300, 25);
    block_on(async {
        let store = d.store().await;
        let now = chrono::Utc::now();
        store
            .save_version(&runbookd::store::VersionRow {
                hash: "queued-earlier".into(),
                runbook: "bulk".into(),
                path: "runbooks/bulk.yaml".into(),
                yaml: String::new(),
                scripts: Default::default(),
                created_at: now,
            })
            .await
            .unwrap();
        // Interleaved, so the queue runbook's runs fall on both sides of
        // the first 1,000.
        for i in 0..bulk + inline {
            let runbook = if i % (bulk / inline) == 0 && i / (bulk / inline) < inline {
                "inline"
            } else {
                "bulk"
            };
            store
                .insert_run(&runbookd::store::NewRun {
                    runbook: runbook.into(),
                    version_hash: "queued-earlier".into(),
                    trigger_kind: runbookd::store::TriggerKind::Manual,
                    trigger_key: None,
                    scheduled_at: None,
                    params: serde_json::json!({}),
                    trigger_data: serde_json::json!({}),
                    dry_run: false,
                    created_at: now,
                    admission: runbookd::store::Admission::Free,
                })
                .await
                .unwrap();
        }
    });
    let daemon = Daemon::start(&d, &[]);
    let runs = daemon.wait_runs("the whole backlog", Duration::from_secs(120), |r| {
        r.iter().all(|r| r.status == RunStatus::Succeeded)
    });
    assert_eq!(runs.len(), bulk + inline);
    assert!(runs.iter().all(|r| r.attempts == 1), "a run started twice");
    let mut inline_runs: Vec<_> = of(&runs, "inline").into_iter().cloned().collect();
    assert_eq!(inline_runs.len(), inline);
    inline_runs.sort_by_key(|r| r.id);
    assert!(
        inline_runs
            .windows(2)
            .all(|w| w[0].started_at <= w[1].started_at),
        "queued runs started out of order"
    );
    assert!(inline_runs.last().unwrap().id > 1_000);
    assert_one_at_a_time(&inline_runs);
    // Each run's output is its own id: it ran as itself.
    assert!(
        runs.iter()
            .all(|r| r.output == Some(serde_json::json!(r.id)))
    );
}

#[test]
fn caught_up_slots_under_forbid_run_one_after_another() {
    let d = Deployment::new();
    d.runbook(
        "fast.yaml",
        "triggers:\n  - every: 10s\ncatch_up: all\nrun: trigger.scheduled_at\n",
    );
    block_on(async {
        let store = d.store().await;
        store
            .init_mark(
                "fast",
                "every 10s",
                chrono::Utc::now() - chrono::TimeDelta::seconds(45),
            )
            .await
            .unwrap();
    });
    let daemon = Daemon::start(&d, &[]);
    let runs = daemon.wait_runs("the four caught-up slots ran", LIMIT, |r| {
        r.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 4
    });
    assert!(
        runs.iter().all(|r| r.status != RunStatus::Skipped),
        "{runs:?}"
    );
    let mut spans: Vec<_> = runs
        .iter()
        .filter_map(|r| Some((r.started_at?, r.finished_at?, r.scheduled_at?)))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1 && w[1].2 > w[0].2,
            "not one after another in slot order: {w:?}"
        );
    }
}

#[test]
fn a_runbook_that_has_not_succeeded_in_time_raises_an_issue() {
    let d = Deployment::new();
    d.runbook(
        "watched.yaml",
        "triggers:\n  - manual\nexpect: { success_within: 1h }\nrun: '1'\n",
    );
    assert_eq!(d.cli(&["run", "watched"]).code, 0);
    // That success was long ago.
    block_on(async {
        let url = format!("sqlite://{}", d.db().display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("UPDATE runs SET finished_at = '2026-01-01T00:00:00.000000Z'")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let daemon = Daemon::start(&d, &[]);
    daemon.wait_for_line("no successful run within the expected time", LIMIT);
    let issues: serde_json::Value =
        serde_json::from_str(&d.cli(&["issues", "--json"]).stdout).unwrap();
    assert_eq!(issues[0]["key"], "expect:watched");
    assert_eq!(issues[0]["title"], "watched has not succeeded in 1h");
    assert_eq!(issues[0]["severity"], "high");
}

#[test]
fn many_every_second_schedules_keep_firing_when_they_are_armed_all_at_once() {
    // Hundreds of triggers armed in one burst (the timer wheel used before
    // overflowed its channels on this and stopped firing): every slot must
    // still become a run.
    let d = Deployment::new();
    let n = 600;
    for i in 0..n {
        d.runbook(
            &format!("tick-{i}.yaml"),
            "triggers:\n  - every: 1s\nconcurrency: allow\ncatch_up: all\nrun: '1'\n",
        );
    }
    let daemon = Daemon::start(&d, &[("RUNBOOKD_WORKERS", "8")]);
    let start = chrono::Utc::now();
    let target = start + chrono::TimeDelta::seconds(8);
    // Every runbook gets a run for a slot 8 s after the start, however late.
    let runs = daemon.wait_runs(
        "every runbook reaching the slot 8 s after the start",
        Duration::from_secs(180),
        |runs| {
            let reached: HashSet<&str> = runs
                .iter()
                .filter(|r| r.scheduled_at.is_some_and(|s| s >= target))
                .map(|r| r.runbook.as_str())
                .collect();
            reached.len() == n
        },
    );
    // No slot of any runbook between the first and the target was dropped.
    for i in (0..n).step_by(97) {
        let name = format!("tick-{i}");
        let mut slots: Vec<_> = of(&runs, &name)
            .iter()
            .filter_map(|r| r.scheduled_at)
            .filter(|s| *s <= target)
            .collect();
        slots.sort();
        for w in slots.windows(2) {
            assert_eq!(
                w[1] - w[0],
                chrono::TimeDelta::seconds(1),
                "{name}: a slot is missing between {} and {}",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
fn a_run_that_kills_its_daemon_four_times_is_abandoned_not_run_again() {
    let d = Deployment::new();
    d.runbook(
        "crasher.yaml",
        &format!("triggers:\n  - manual\nrun: |\n  {}", busy(120.0)),
    );
    let env = [("RUNBOOKD_API_TOKEN", "crash-loop-token")];
    for attempt in 1..=4 {
        let mut daemon = Daemon::start(&d, &env);
        if attempt == 1 {
            let asked = send(
                client()
                    .post(format!("{}/api/v1/runbooks/crasher/runs", daemon.url))
                    .bearer_auth("crash-loop-token")
                    .json(&serde_json::json!({})),
            );
            assert_eq!(asked.status, 202, "{:?}", asked.body);
        }
        daemon.wait_runs("the run in its attempt", LIMIT, |r| {
            r.len() == 1 && r[0].status == RunStatus::Running && r[0].attempts == attempt
        });
        daemon.signal("KILL");
        daemon.wait_exit(LIMIT);
    }

    let mut daemon = Daemon::start(&d, &env);
    let banner = daemon.text();
    assert!(
        banner.lines().any(|l| l
            == "  recovered  1 interrupted run(s), 0 queued again, 1 abandoned (interrupted too many times)"),
        "{banner}"
    );
    let runs = daemon.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.status, r.attempts, r.error.as_deref()))
            .collect::<Vec<_>>(),
        [(
            RunStatus::Abandoned,
            4,
            Some(
                "interrupted 4 times (the process running it stopped each time); not run again. Start it anew once the cause is fixed"
            )
        )]
    );
    let attempts: Vec<_> = common::daemon::read_detail(&daemon.db, runs[0].id)
        .attempts
        .iter()
        .map(|a| (a.attempt, a.status))
        .collect();
    assert_eq!(
        attempts,
        (1..=4)
            .map(|n| (n, RunStatus::Interrupted))
            .collect::<Vec<_>>()
    );

    // Abandoned is final: a later start finds nothing to recover or run.
    daemon.signal("TERM");
    daemon.wait_exit(LIMIT);
    let daemon = Daemon::start(&d, &env);
    assert!(!daemon.text().contains("recovered"), "{}", daemon.text());
    assert_eq!(
        daemon
            .runs()
            .iter()
            .map(|r| (r.status, r.attempts))
            .collect::<Vec<_>>(),
        [(RunStatus::Abandoned, 4)]
    );
}

#[test]
fn after_the_clock_steps_forward_latest_runs_only_the_most_recent_slot() {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "{lib} is missing: install Debian's faketime package (.ci/run does)"
    );
    let d = Deployment::new();
    d.runbook("tick.yaml", "triggers:\n  - every: 5s\nrun: '1'\n");
    let offset = d.path().join("clock-offset");
    std::fs::write(&offset, "+0s").unwrap();
    let daemon = Daemon::start(
        &d,
        &[
            ("LD_PRELOAD", lib),
            ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap()),
            ("FAKETIME_CACHE_DURATION", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    daemon.wait_runs("a tick on time", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Succeeded)
    });
    // An NTP step: the wall clock jumps 45 s ahead, nine slots, all of them
    // within the minute a late slot may still just run.
    std::fs::write(&offset, "+45s").unwrap();
    daemon.wait_for_line("slots passed over by the clock stepping forward", LIMIT);
    let runs = daemon.wait_runs("the slot after the step", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Missed)
            && r.last().is_some_and(|r| r.status != RunStatus::Missed)
    });
    let missed: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Missed)
        .map(|r| r.scheduled_at.unwrap())
        .collect();
    let five = chrono::TimeDelta::seconds(5);
    // The nine slots passed over, and the one due as the step came when the
    // scheduler was waking for it; all but the most recent are missed.
    assert!((8..=9).contains(&missed.len()), "{runs:#?}");
    assert!(missed.windows(2).all(|w| w[1] - w[0] == five), "{missed:?}");
    // After the missed slots, one run, for the most recent slot; before them,
    // the runs on time. None of the passed-over slots ran.
    let ran_after: Vec<_> = runs
        .iter()
        .filter(|r| r.status != RunStatus::Missed && r.scheduled_at.unwrap() > missed[0])
        .map(|r| r.scheduled_at.unwrap())
        .collect();
    assert_eq!(
        ran_after.first(),
        missed.last().map(|m| *m + five).as_ref(),
        "{runs:#?}"
    );
    assert!(
        ran_after.windows(2).all(|w| w[1] - w[0] == five),
        "{ran_after:?}"
    );
    assert!(
        daemon
            .text()
            .contains("the clock stepped forward; slots it passed over follow the catch-up policy"),
        "{}",
        daemon.text()
    );
}
