//! The PostgreSQL scenarios: webhooks and trivial runs against one shared
//! database, with one daemon and with two, each on a fresh database of its
//! own on the server `RUNBOOKD_TEST_POSTGRES_URL` names (the local server by
//! default).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use super::{Daemon, deployment, hook_runbook, pct, signed, start_with};

/// A fresh database, dropped afterwards.
struct Db {
    admin: String,
    name: String,
    url: String,
}

impl Db {
    async fn create() -> Result<Db, String> {
        let admin = std::env::var("RUNBOOKD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("runbookd_bench_{}", std::process::id());
        let mut url = url::Url::parse(&admin).map_err(|e| e.to_string())?;
        url.set_path(&name);
        let db = Db {
            admin,
            name,
            url: url.to_string(),
        };
        db.admin_sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name))
            .await?;
        db.admin_sql(&format!("CREATE DATABASE {}", db.name))
            .await?;
        Ok(db)
    }

    async fn admin_sql(&self, sql: &str) -> Result<(), String> {
        let mut conn = sqlx::PgConnection::connect(&self.admin)
            .await
            .map_err(|e| format!("{}: {e}", self.admin))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn drop(self) {
        let _ = self
            .admin_sql(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }

    async fn count(&self, sql: &'static str) -> i64 {
        let Ok(mut conn) = sqlx::PgConnection::connect(&self.url).await else {
            return 0;
        };
        sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0)
    }
}

/// `daemons` daemons of 8 workers each on a fresh database.
async fn cluster(daemons: usize) -> Result<(Db, tempfile::TempDir, Vec<Daemon>), String> {
    let db = Db::create().await?;
    let d = deployment(&[hook_runbook()]);
    let nodes = (0..daemons)
        .map(|_| start_with(d.path(), 8, &["--database", &db.url]))
        .collect();
    Ok((db, d, nodes))
}

/// 64 connections for 15 s, spread over the daemons: accepted/s, latency,
/// and every 202 has its run; then how long the runs took to finish.
pub async fn webhook() -> Value {
    let mut out = serde_json::Map::new();
    for n in [1, 2] {
        out.insert(format!("daemons_{n}"), webhook_with(n).await);
    }
    Value::Object(out)
}

async fn webhook_with(daemons: usize) -> Value {
    let (db, _dir, nodes) = match cluster(daemons).await {
        Ok(c) => c,
        Err(e) => return json!({ "skipped": e }),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..64 {
        let url = nodes[c % nodes.len()].url.clone();
        let (client, stop, counter) = (client.clone(), stop.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut accepted, mut errors) = (Vec::new(), 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match signed(&client, &url, n).send().await {
                    Ok(r) if r.status() == 202 => {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        accepted += 1;
                    }
                    _ => errors += 1,
                }
            }
            (lat, accepted, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut lat, mut accepted, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, a, e) = t.await.unwrap();
        lat.extend(l);
        accepted += a;
        errors += e;
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let drained = wait_succeeded(&db, accepted as i64, Duration::from_secs(180)).await;
    let runs = db.count("SELECT count(*) FROM runs").await;
    drop(nodes);
    db.drop().await;
    json!({
        "accepted_per_s": accepted as f64 / secs, "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99),
        "accepted": accepted, "errors": errors, "runs_recorded": runs,
        "all_ran_after_s": drained.map(|d| d.as_secs_f64()),
    })
}

/// Wait until `n` runs succeeded; how long that took, or `None` by `limit`.
async fn wait_succeeded(db: &Db, n: i64, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if db
            .count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
            .await
            >= n
        {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// 5,000 deliveries sent as fast as 50 connections go, spread over the
/// daemons: runs finished per second, from the first request to the last
/// run's end.
pub async fn runs() -> Value {
    let mut out = serde_json::Map::new();
    for n in [1, 2] {
        out.insert(format!("daemons_{n}"), runs_with(n).await);
    }
    Value::Object(out)
}

async fn runs_with(daemons: usize) -> Value {
    let (db, _dir, nodes) = match cluster(daemons).await {
        Ok(c) => c,
        Err(e) => return json!({ "skipped": e }),
    };
    let client = reqwest::Client::new();
    let total = 5000u64;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for chunk in 0..50u64 {
        let url = nodes[chunk as usize % nodes.len()].url.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for n in (chunk * 100)..(chunk * 100 + 100) {
                let _ = signed(&client, &url, n).send().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let done = wait_succeeded(&db, total as i64, Duration::from_secs(180)).await;
    let secs = t0.elapsed().as_secs_f64();
    let succeeded = db
        .count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        .await;
    let twice = db
        .count("SELECT count(*) FROM runs WHERE attempts <> 1")
        .await;
    drop(nodes);
    db.drop().await;
    json!({
        "runs_per_s": succeeded as f64 / secs, "succeeded": succeeded, "of": total,
        "started_more_than_once": twice, "finished": done.is_some(),
    })
}
