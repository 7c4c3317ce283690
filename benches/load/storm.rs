//! The `storm` scenario: signed webhooks sent at a fixed rate for 30 s (open
//! loop: a request is sent when its time comes, whether or not the earlier
//! ones were answered), at 5,000/s and at the rate the daemon reached in a
//! short closed-loop probe. It reports what was accepted and how fast, the
//! run backlog second by second, how long runs waited to start, how long
//! after the storm the backlog was drained, and checks that every accepted
//! delivery ran exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Daemon, deployment, hook_runbook, pct, signed, start};

/// How long the storm lasts.
const STORM: Duration = Duration::from_secs(30);
/// Requests in flight at most; a request whose time has come waits for room,
/// and its latency counts from its time, not from when it was sent.
const IN_FLIGHT: usize = 448;

pub async fn storm() -> Value {
    let max = probe().await;
    let mut out = serde_json::Map::new();
    out.insert("probe_accepted_per_s".into(), json!(max.round()));
    for (label, rate) in [("at_5000", 5000.0), ("at_probe", max.round())] {
        out.insert(label.into(), at_rate(rate).await);
    }
    Value::Object(out)
}

/// The closed-loop rate: 64 connections, as fast as answered, for 5 s.
async fn probe() -> f64 {
    let d = deployment(&[hook_runbook()]);
    let daemon = start(d.path(), 8);
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (counter, ok) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (client, url, stop, counter, ok) = (
            client.clone(),
            daemon.url.clone(),
            stop.clone(),
            counter.clone(),
            ok.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if let Ok(r) = signed(&client, &url, n).send().await
                    && r.status() == 202
                {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    ok.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// One answer: the run id and the latency from the request's due time.
type Answer = Option<(i64, f64)>;

async fn at_rate(rate: f64) -> Value {
    let d = deployment(&[hook_runbook()]);
    let daemon = start(d.path(), 8);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn(backlog(daemon.dir.join("runbookd.db"), sampling.clone()));
    let room = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    let mut answers = Vec::new();
    while t0.elapsed() < STORM {
        tick.tick().await;
        let due = (t0.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let at = t0 + Duration::from_secs_f64(sent as f64 / rate);
            let req = signed(&client, &daemon.url, sent);
            sent += 1;
            let permit = room.clone().acquire_owned().await.unwrap();
            answers.push(tokio::spawn(async move {
                let r = req.send().await.ok().filter(|r| r.status() == 202)?;
                let v: Value = r.json().await.ok()?;
                drop(permit);
                Some((v["run_id"].as_i64()?, at.elapsed().as_secs_f64() * 1000.0))
            }));
        }
    }
    let mut got: Vec<Answer> = Vec::with_capacity(answers.len());
    for a in answers {
        got.push(a.await.unwrap_or(None));
    }
    let secs = t0.elapsed().as_secs_f64();
    let load_ended = chrono::Utc::now();
    let drained = super::wait_idle(&daemon.dir, Duration::from_secs(300)).await;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let mut report = judge(&daemon, &got, load_ended, drained).await;
    let accepted = got.iter().flatten().count();
    let mut lat: Vec<f64> = got.iter().flatten().map(|(_, l)| *l).collect();
    lat.sort_by(f64::total_cmp);
    let extra = json!({
        "rate": rate, "sent": sent, "accepted": accepted, "errors": got.len() - accepted,
        "accepted_per_s": accepted as f64 / secs, "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99),
        "backlog_each_s": samples,
    });
    report
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    report
}

/// Queued and running runs, once a second, until told to stop.
async fn backlog(db: std::path::PathBuf, sampling: Arc<AtomicBool>) -> Vec<i64> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pool = None;
    while sampling.load(Ordering::Relaxed) {
        tick.tick().await;
        if pool.is_none() {
            pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
                .await
                .ok();
        }
        let Some(p) = &pool else { continue };
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM runs WHERE status = 'queued') + (SELECT count(*) FROM runs WHERE status = 'running')",
        )
        .fetch_one(p)
        .await
        .unwrap_or(-1);
        out.push(n);
    }
    out
}

/// What the daemon recorded: lost and doubled runs, start lag, drain time.
async fn judge(
    daemon: &Daemon,
    got: &[Answer],
    load_ended: chrono::DateTime<chrono::Utc>,
    drained: bool,
) -> Value {
    let runs = super::runs_of(&daemon.dir).await;
    let by_id: HashMap<i64, &runbookd::store::RunRow> = runs.iter().map(|r| (r.id, r)).collect();
    let ids: Vec<i64> = got.iter().flatten().map(|(id, _)| *id).collect();
    let lost = ids.iter().filter(|i| !by_id.contains_key(i)).count();
    let distinct: HashSet<i64> = ids.iter().copied().collect();
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        daemon.dir.join("runbookd.db").display()
    ))
    .await
    .unwrap();
    let started_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT run_id FROM attempts GROUP BY run_id HAVING count(*) > 1)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut lag: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some((r.started_at? - r.created_at).as_seconds_f64() * 1000.0))
        .collect();
    lag.sort_by(f64::total_cmp);
    let first = runs.iter().map(|r| r.created_at).min();
    let last = runs.iter().filter_map(|r| r.finished_at).max();
    let succeeded = runs
        .iter()
        .filter(|r| r.status == runbookd::store::RunStatus::Succeeded)
        .count();
    let within_1s = runs
        .iter()
        .filter(|r| {
            r.finished_at
                .is_some_and(|f| f <= load_ended + chrono::TimeDelta::seconds(1))
        })
        .count();
    let end_to_end = match (first, last) {
        (Some(a), Some(b)) => succeeded as f64 / (b - a).as_seconds_f64(),
        _ => 0.0,
    };
    json!({
        "lost": lost, "duplicated_answers": ids.len() - distinct.len(), "runs_started_twice": started_twice,
        "succeeded": succeeded, "runs_per_s_end_to_end": end_to_end,
        "start_lag_p50_ms": pct(&lag, 0.5), "start_lag_p99_ms": pct(&lag, 0.99),
        "finished_within_1s_of_load_end": within_1s,
        "drained_after_load_s": if drained { last.map(|e| (e - load_ended).as_seconds_f64().max(0.0)) } else { None },
    })
}
