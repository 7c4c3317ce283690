//! `cargo bench --bench load [-- SCENARIO...]`: the real `runbookd` binary,
//! driven over loopback, measured, and checked for correctness. Prints a table
//! and writes `target/bench/results.json`. Every scenario is bounded in time.
//!
//! Scenarios: webhook, storm, webhook-latency, runs, schedule, footprint,
//! history, ui; and on PostgreSQL (`RUNBOOKD_TEST_POSTGRES_URL`, default the local
//! server), with one and with two daemons: pg-webhook, pg-runs.
//!
//! `RUNBOOKD_BENCH_BIN` names another `runbookd` binary to measure (an older
//! build, for a before/after comparison in one sitting).

#[path = "load/pg.rs"]
mod pg;
#[path = "load/storm.rs"]
mod storm;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runbookd::http::hex_hmac;
use runbookd::store::{Access, RunFilter, RunStatus};
use serde_json::{Value, json};

const SECRET: &str = "bench-secret-of-32-bytes-or-more";

struct Daemon {
    child: Child,
    url: String,
    dir: PathBuf,
    started_in: Duration,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the daemon on `dir` and wait until it listens.
fn start(dir: &Path, workers: usize) -> Daemon {
    start_with(dir, workers, &[])
}

/// Start the daemon on `dir` with more arguments to `serve`.
fn start_with(dir: &Path, workers: usize, args: &[&str]) -> Daemon {
    let t = Instant::now();
    let bin = std::env::var("RUNBOOKD_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_runbookd").to_string());
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir)
        .env("HOOK_SECRET", SECRET)
        .env("RUNBOOKD_WORKERS", workers.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("runbookd starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(u) = line.trim().strip_prefix("listening") {
            url = u.trim().to_string();
        }
        if line.contains("next fire times") || line.contains("schedules  none") {
            break;
        }
    }
    // Keep reading what it prints, as a terminal or a journal would.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    assert!(!url.is_empty(), "the daemon did not start");
    Daemon {
        child,
        url,
        dir: dir.to_path_buf(),
        started_in: t.elapsed(),
    }
}

fn deployment(runbooks: &[(String, String)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("runbooks")).unwrap();
    std::fs::create_dir(d.path().join("scripts")).unwrap();
    for (name, yaml) in runbooks {
        std::fs::write(d.path().join("runbooks").join(format!("{name}.yaml")), yaml).unwrap();
    }
    d
}

fn hook_runbook() -> (String, String) {
    ("hook".into(), "secrets: [HOOK_SECRET]\nconcurrency: allow\ntriggers:\n  - webhook: { auth: github, secret: HOOK_SECRET }\nrun: trigger.body.n\n".into())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn runs_of(dir: &Path) -> Vec<runbookd::store::RunRow> {
    let store = runbookd::store::open(
        &format!("sqlite://{}", dir.join("runbookd.db").display()),
        Access::Read,
    )
    .await
    .unwrap();
    store
        .list_runs(&RunFilter {
            limit: 10_000_000,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn signed(client: &reqwest::Client, url: &str, n: u64) -> reqwest::RequestBuilder {
    let body = format!("{{\"n\":{n}}}");
    client
        .post(format!("{url}/hooks/hook"))
        .header("content-type", "application/json")
        .header("x-github-delivery", format!("d-{n}"))
        .header(
            "x-hub-signature-256",
            format!("sha256={}", hex_hmac(SECRET.as_bytes(), &[body.as_bytes()])),
        )
        .body(body)
}

/// 64 connections for 15 s: accepted/s, latency, and every 202 has its run.
async fn webhook() -> Value {
    let d = deployment(&[hook_runbook()]);
    let daemon = start(d.path(), 8);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url, stop, counter) = (
            client.clone(),
            daemon.url.clone(),
            stop.clone(),
            counter.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut ids = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match signed(&client, &url, n).send().await {
                    Ok(r) if r.status() == 202 => {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        let v: Value = r.json().await.unwrap_or_default();
                        ids.push(v["run_id"].as_i64().unwrap_or(-1));
                    }
                    _ => errors += 1,
                }
            }
            (lat, ids, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut lat, mut ids, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (l, i, e) = t.await.unwrap();
        lat.extend(l);
        ids.extend(i);
        errors += e;
    }
    let secs = t0.elapsed().as_secs_f64();
    let load_ended = chrono::Utc::now();
    lat.sort_by(f64::total_cmp);
    let drained = wait_idle(&daemon.dir, Duration::from_secs(180)).await;
    let runs = runs_of(&daemon.dir).await;
    let known: std::collections::HashSet<i64> = runs.iter().map(|r| r.id).collect();
    let lost = ids.iter().filter(|i| !known.contains(i)).count();
    // Do the runs keep pace? How long each waited to start, and how long
    // after the load the last one finished.
    let mut waits: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some((r.started_at? - r.created_at).as_seconds_f64()))
        .collect();
    waits.sort_by(f64::total_cmp);
    let last_end = runs.iter().filter_map(|r| r.finished_at).max();
    json!({
        "accepted_per_s": ids.len() as f64 / secs, "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99),
        "accepted": ids.len(), "errors": errors, "lost": lost,
        "runs_per_s_during_load": runs.iter().filter(|r| r.finished_at.is_some_and(|f| f <= load_ended)).count() as f64 / secs,
        "start_wait_p50_s": pct(&waits, 0.5), "start_wait_p99_s": pct(&waits, 0.99),
        "finished_within_1s_of_load_end": runs.iter().filter(|r| r.finished_at.is_some_and(|f| f <= load_ended + chrono::TimeDelta::seconds(1))).count(),
        "drained_after_load_s": if drained { last_end.map(|e| (e - load_ended).as_seconds_f64().max(0.0)) } else { None },
    })
}

/// Wait until no run is queued or running; false after `limit`.
async fn wait_idle(dir: &Path, limit: Duration) -> bool {
    let store = runbookd::store::open(
        &format!("sqlite://{}", dir.join("runbookd.db").display()),
        Access::Read,
    )
    .await
    .unwrap();
    let t = Instant::now();
    while t.elapsed() < limit {
        let mut busy = false;
        for status in [RunStatus::Queued, RunStatus::Running] {
            let filter = RunFilter {
                status: Some(status),
                limit: 1,
                ..Default::default()
            };
            busy |= !store.list_runs(&filter).await.unwrap().is_empty();
        }
        if !busy {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Request to run start: one connection, then a fixed 500/s.
async fn webhook_latency() -> Value {
    let d = deployment(&[hook_runbook()]);
    let daemon = start(d.path(), 8);
    let client = reqwest::Client::new();
    let mut sent: Vec<(i64, chrono::DateTime<chrono::Utc>)> = Vec::new();
    let mut n = 0u64;
    for _ in 0..500 {
        let at = chrono::Utc::now();
        let r: Value = signed(&client, &daemon.url, n)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        sent.push((r["run_id"].as_i64().unwrap_or(-1), at));
        n += 1;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut pending = Vec::new();
    for _ in 0..2500 {
        tick.tick().await;
        let at = chrono::Utc::now();
        let req = signed(&client, &daemon.url, n);
        n += 1;
        pending.push(tokio::spawn(async move {
            let r: Value = req.send().await.ok()?.json().await.ok()?;
            Some((r["run_id"].as_i64()?, at))
        }));
    }
    for p in pending {
        if let Ok(Some(x)) = p.await {
            sent.push(x);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = runs_of(&daemon.dir).await;
    let started: std::collections::HashMap<i64, chrono::DateTime<chrono::Utc>> = runs
        .iter()
        .filter_map(|r| Some((r.id, r.started_at?)))
        .collect();
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| Some((*started.get(id)? - *at).num_microseconds()? as f64 / 1000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    json!({"p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "measured": lat.len(), "sent": sent.len()})
}

/// Trivial runs end to end: runs/s and the in-process time per run.
async fn runs() -> Value {
    let d = deployment(&[hook_runbook()]);
    let daemon = start(d.path(), 8);
    let client = reqwest::Client::new();
    let total = 5000u64;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for chunk in 0..50 {
        let (client, url) = (client.clone(), daemon.url.clone());
        tasks.push(tokio::spawn(async move {
            for n in (chunk * 100)..(chunk * 100 + 100) {
                let _ = signed(&client, &url, n).send().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Poll with a count (cheap), so the waiting does not compete with the daemon.
    let deadline = Instant::now() + Duration::from_secs(120);
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        daemon.dir.join("runbookd.db").display()
    ))
    .await
    .unwrap();
    while Instant::now() < deadline {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM runs WHERE status = 'succeeded'")
            .fetch_one(&db)
            .await
            .unwrap_or(0);
        if done as u64 >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let runs = runs_of(&daemon.dir).await;
    let done: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .collect();
    let mut inproc: Vec<f64> = done
        .iter()
        .filter_map(|r| Some((r.finished_at? - r.started_at?).num_microseconds()? as f64))
        .collect();
    inproc.sort_by(f64::total_cmp);
    json!({"runs_per_s": done.len() as f64 / secs, "succeeded": done.len(), "of": total, "run_us_p50": pct(&inproc, 0.5)})
}

/// Lateness of recorded slots (ms), and how many slots were recorded twice.
fn slot_stats(runs: &[runbookd::store::RunRow]) -> (Vec<f64>, usize) {
    let mut lat: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some((r.created_at - r.scheduled_at?).num_milliseconds() as f64))
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut slots = std::collections::HashSet::new();
    let dup = runs
        .iter()
        .filter(|r| !slots.insert((r.runbook.clone(), r.scheduled_at)))
        .count();
    (lat, dup)
}

/// Stop the daemon the way an operator would, so what it accepted is recorded.
fn stop(mut daemon: Daemon) {
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status();
    let _ = daemon.child.wait();
}

/// 1,000 runbooks `every: 1s` for 60 s, then 1,000 cron runbooks all due at
/// the same instant: lateness, missed and duplicated slots.
async fn schedule() -> Value {
    let n = 1000;
    let every: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("tick-{i}"),
                "triggers:\n  - every: 1s\nconcurrency: allow\nrun: '1'\n".to_string(),
            )
        })
        .collect();
    let d = deployment(&every);
    let daemon = start(d.path(), 8);
    let t0 = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let t1 = chrono::Utc::now();
    stop(daemon);
    let runs = runs_of(d.path()).await;
    let (lat, dup) = slot_stats(&runs);
    // Slots that fell in the window [t0 + 2 s, t1 - 10 s] and have no row
    // (the end of the run is left out: slots still being caught up).
    let (a, b) = ((t0.timestamp() + 2), (t1.timestamp() - 10));
    let expected = (b - a + 1).max(0) as usize * n;
    let present = runs
        .iter()
        .filter(|r| {
            r.scheduled_at
                .is_some_and(|s| s.timestamp() >= a && s.timestamp() <= b)
        })
        .count();
    let every_s = json!({"runbooks": n, "seconds": 60, "lateness_p50_ms": pct(&lat, 0.5), "lateness_p99_ms": pct(&lat, 0.99), "lateness_max_ms": lat.last(), "missed": expected.saturating_sub(present), "duplicated": dup, "statuses_missed": runs.iter().filter(|r| r.status == RunStatus::Missed).count()});

    // All due at one instant, 15 s after the runbooks are written: a
    // six-field cron (seconds first) that fires once a minute.
    let due = chrono::Utc::now() + chrono::TimeDelta::seconds(15);
    let due = due - chrono::TimeDelta::nanoseconds(due.timestamp_subsec_nanos() as i64);
    let expr = format!("{} {} * * * *", due.format("%-S"), due.format("%-M"));
    let cron: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("daily-{i}"),
                format!("triggers:\n  - cron: \"{expr}\"\n    timezone: UTC\nconcurrency: allow\nrun: '1'\n"),
            )
        })
        .collect();
    let d = deployment(&cron);
    let daemon = start(d.path(), 8);
    let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(15);
    tokio::time::sleep(wait).await;
    stop(daemon);
    let runs = runs_of(d.path()).await;
    let at_due: Vec<_> = runs
        .into_iter()
        .filter(|r| r.scheduled_at == Some(due))
        .collect();
    let (lat, dup) = slot_stats(&at_due);
    let cron_s = json!({"runbooks": n, "lateness_p50_ms": pct(&lat, 0.5), "lateness_p99_ms": pct(&lat, 0.99), "lateness_max_ms": lat.last(), "missed": n.saturating_sub(at_due.len() - dup), "duplicated": dup});
    json!({"every_1s": every_s, "cron_same_instant": cron_s})
}

/// Memory and start-up with no, the shipped, 1,000 and 10,000 runbooks.
async fn footprint() -> Value {
    let mut out = serde_json::Map::new();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/runbooks/heartbeat.yaml"
    ))
    .unwrap();
    for (label, rbs) in [
        ("none", vec![]),
        ("shipped", vec![("heartbeat".to_string(), shipped.clone())]),
        (
            "1000",
            (0..1000)
                .map(|i| {
                    (
                        format!("rb-{i}"),
                        "triggers:\n  - cron: \"0 3 * * *\"\nrun: '1'\n".to_string(),
                    )
                })
                .collect(),
        ),
        (
            "10000",
            (0..10000)
                .map(|i| {
                    (
                        format!("rb-{i}"),
                        "triggers:\n  - cron: \"0 3 * * *\"\nrun: '1'\n".to_string(),
                    )
                })
                .collect(),
        ),
    ] {
        let d = deployment(&rbs);
        let daemon = start(d.path(), 8);
        tokio::time::sleep(Duration::from_secs(2)).await;
        out.insert(label.into(), json!({"rss_mib": rss_mib(daemon.child.id()), "startup_ms": daemon.started_in.as_millis()}));
    }
    Value::Object(out)
}

/// The API over 1,000,000 recorded runs and 1,000 runbooks.
/// A daemon over 1,000 runbooks and 1,000,000 runs (one a second over the
/// last 12 days, every 17th failed), seeded through its own schema.
async fn seeded_history() -> (tempfile::TempDir, Daemon) {
    let rbs: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("rb-{i}"), "run: '1'\n".to_string()))
        .collect();
    let d = deployment(&rbs);
    {
        // Seed through the daemon's own schema, then fill in bulk.
        let daemon = start(d.path(), 8);
        drop(daemon);
        let url = format!("sqlite://{}", d.path().join("runbookd.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO runbook_versions (hash, runbook, path, yaml, scripts, created_at) VALUES ('h', 'rb-0', 'x', 'x', '{}', '2026-01-01T00:00:00.000000Z')").execute(&pool).await.unwrap();
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
             INSERT INTO runs (runbook, version_hash, trigger_kind, status, params, trigger_data, attempts, created_at, started_at, finished_at, output)
             SELECT 'rb-' || (i % 1000), 'h', 'manual', CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'succeeded' END, '{}', '{}', 1,
                    t, t, t, '1'
             -- One run a second over the last 12 days: inside the retention
             -- period, so the daemon does not prune them while measured.
             FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%S.000000Z', 'now', '-1000000 seconds', '+' || i || ' seconds') AS t FROM n)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let daemon = start(d.path(), 8);
    (d, daemon)
}

/// p50 and p99 of `rounds` sequential GETs of each path.
async fn latencies(
    daemon: &Daemon,
    paths: &[(&str, &str, usize)],
) -> serde_json::Map<String, Value> {
    let client = reqwest::Client::new();
    let mut out = serde_json::Map::new();
    for (label, path, rounds) in paths {
        let mut lat = Vec::new();
        for _ in 0..*rounds {
            let t = Instant::now();
            let r = client
                .get(format!("{}{path}", daemon.url))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{label}: {}", r.status());
            let _ = r.bytes().await;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        out.insert(
            label.to_string(),
            json!({"p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99)}),
        );
    }
    out
}

async fn history() -> Value {
    let (d, daemon) = seeded_history().await;
    let mut out = latencies(
        &daemon,
        &[
            ("latest_50", "/api/v1/runs?limit=50", 200),
            ("per_runbook", "/api/v1/runs?runbook=rb-7&limit=50", 200),
            ("failed_only", "/api/v1/runs?status=failed&limit=50", 200),
            ("next_page", "/api/v1/runs?limit=50&cursor=500000", 200),
            ("by_id", "/api/v1/runs/424242", 200),
            ("runbooks_list", "/api/v1/runbooks", 100),
        ],
    )
    .await;
    // What was measured is still there (nothing pruned meanwhile).
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        d.path().join("runbookd.db").display()
    ))
    .await
    .unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    out.insert("runs".into(), json!(kept));
    Value::Object(out)
}

/// The web UI's pages over the same history: the overview of 1,000
/// runbooks, the runs page and its filters, a run, a runbook.
async fn ui() -> Value {
    let (_d, daemon) = seeded_history().await;
    let out = latencies(
        &daemon,
        &[
            ("overview", "/", 100),
            ("runs", "/runs", 200),
            ("runs_per_runbook", "/runs?runbook=rb-7", 200),
            ("runs_failed", "/runs?status=failed", 200),
            ("runs_older", "/runs?cursor=500000", 200),
            // No webhook runs: the trigger filter reads its whole bound.
            ("runs_by_trigger_worst", "/runs?trigger=webhook", 50),
            ("run", "/runs/424242", 200),
            ("runbook", "/runbooks/rb-7", 200),
        ],
    )
    .await;
    Value::Object(out)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = [
        "webhook",
        "storm",
        "webhook-latency",
        "runs",
        "schedule",
        "footprint",
        "history",
        "ui",
        "pg-webhook",
        "pg-runs",
    ];
    let mut results = serde_json::Map::new();
    for name in all
        .iter()
        .filter(|n| wanted.is_empty() || wanted.iter().any(|w| w == *n))
    {
        eprintln!("running {name} ...");
        let t = Instant::now();
        let r = match *name {
            "webhook" => webhook().await,
            "storm" => storm::storm().await,
            "webhook-latency" => webhook_latency().await,
            "runs" => runs().await,
            "schedule" => schedule().await,
            "footprint" => footprint().await,
            "history" => history().await,
            "pg-webhook" => pg::webhook().await,
            "pg-runs" => pg::runs().await,
            _ => ui().await,
        };
        println!("{name:<16} {}  ({:.0}s)", r, t.elapsed().as_secs_f64());
        results.insert(name.to_string(), r);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("results.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&Value::Object(results)).unwrap(),
    )
    .unwrap();
    println!("results: {}", file.display());
}
