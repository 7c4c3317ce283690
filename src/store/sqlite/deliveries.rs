//! SQLite: webhook deliveries, accepted in batches (group commit), with
//! deduplication and rate limits decided inside the transaction: set-wise
//! (`accept_set.rs`) where nothing depends on other runs, one by one here
//! where it does (`limit:`, `concurrency: forbid`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{SqliteStore, accept_set, runs, time_col};
use crate::store::*;

/// Record a batch of deliveries, with their runs, in one transaction.
pub(super) async fn accept_deliveries(
    store: &SqliteStore,
    batch: &[Delivery],
) -> Result<Vec<Accepted>> {
    let mut tx = store.write().await?;
    let mut out = Vec::with_capacity(batch.len());
    let mut rest = batch;
    while !rest.is_empty() {
        // Runs of plain deliveries go set-wise; the others one by one, in order.
        let plain = rest.iter().take_while(|d| accept_set::plain(d)).count();
        if plain > 0 {
            out.extend(accept_set::accept(&mut tx, &rest[..plain]).await?);
            rest = &rest[plain..];
        } else {
            out.push(accept_one(&mut tx, &rest[0]).await?);
            rest = &rest[1..];
        }
    }
    tx.commit().await?;
    Ok(out)
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn list_deliveries(
        &self,
        runbook: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT d.*, r.status AS run_status FROM deliveries d LEFT JOIN runs r ON r.id = d.run_id
             WHERE (?1 IS NULL OR d.runbook = ?1) AND (?2 IS NULL OR d.id < ?2)
             ORDER BY d.id DESC LIMIT ?3",
        )
        .bind(runbook)
        .bind(before)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_row).collect()
    }
}

fn delivery_row(r: &SqliteRow) -> Result<DeliveryRow> {
    let headers: String = r.try_get("headers")?;
    Ok(DeliveryRow {
        id: r.try_get("id")?,
        runbook: r.try_get("runbook")?,
        trigger_key: r.try_get("trigger_key")?,
        received_at: time_col(r, "received_at")?
            .ok_or_else(|| StoreError::Corrupt("received_at is empty".into()))?,
        dedup_key: r.try_get("dedup_key")?,
        outcome: r.try_get("outcome")?,
        run_id: r.try_get("run_id")?,
        duplicate_of: r.try_get("duplicate_of")?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: r.try_get("body")?,
        detail: r.try_get("detail")?,
        run_status: r.try_get("run_status")?,
    })
}

async fn insert_delivery(
    tx: &mut SqliteConnection,
    d: &Delivery,
    outcome: DeliveryOutcome,
    run: Option<RunId>,
    duplicate_of: Option<i64>,
    detail: Option<&str>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO deliveries (runbook, trigger_key, received_at, dedup_key, outcome, run_id, duplicate_of, headers, body, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&d.runbook)
    .bind(&d.trigger_key)
    .bind(ts(d.received_at))
    .bind(&d.dedup_key)
    .bind(outcome)
    .bind(run)
    .bind(duplicate_of)
    .bind(d.headers.to_string())
    .bind(&d.body)
    .bind(detail)
    .fetch_one(&mut *tx)
    .await?)
}

/// Claim the dedup key for this delivery; `Some((delivery, run))` of the
/// original when it is a repeat within the window.
async fn dedup(
    tx: &mut SqliteConnection,
    d: &Delivery,
    key: &str,
) -> Result<Option<(i64, Option<RunId>)>> {
    let claimed: Option<i64> = sqlx::query_scalar(
        "INSERT INTO webhook_dedup (runbook, trigger_key, dedup_key, delivery_id, run_id, expires_at)
         VALUES (?1, ?2, ?3, 0, NULL, ?4)
         ON CONFLICT (runbook, trigger_key, dedup_key) DO UPDATE
             SET delivery_id = 0, run_id = NULL, expires_at = excluded.expires_at
             WHERE webhook_dedup.expires_at <= ?5
         RETURNING 1",
    )
    .bind(&d.runbook)
    .bind(&d.trigger_key)
    .bind(key)
    .bind(ts(d.dedup_until))
    .bind(ts(d.received_at))
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_some() {
        return Ok(None);
    }
    let row = sqlx::query("SELECT delivery_id, run_id FROM webhook_dedup WHERE runbook = ? AND trigger_key = ? AND dedup_key = ?")
        .bind(&d.runbook)
        .bind(&d.trigger_key)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some((row.try_get("delivery_id")?, row.try_get("run_id")?)))
}

async fn accept_one(tx: &mut SqliteConnection, d: &Delivery) -> Result<Accepted> {
    if let Some(key) = &d.dedup_key
        && let Some((original, run)) = dedup(tx, d, key).await?
    {
        let delivery =
            insert_delivery(tx, d, DeliveryOutcome::Duplicate, run, Some(original), None).await?;
        return Ok(Accepted::Duplicate {
            delivery,
            original,
            run,
        });
    }
    let (delivery, run) = match &d.fate {
        Fate::Record { outcome, detail } => (
            insert_delivery(tx, d, *outcome, None, None, Some(detail)).await?,
            None,
        ),
        Fate::Run { run, limit } => {
            let throttled = match limit {
                Some((runs, since)) => count_since(tx, &run.runbook, *since).await? >= *runs as i64,
                None => false,
            };
            let (outcome, detail) = if throttled {
                (
                    DeliveryOutcome::Throttled,
                    Some("the runbook's `limit:` was reached"),
                )
            } else {
                (DeliveryOutcome::Accepted, None)
            };
            let delivery = insert_delivery(tx, d, outcome, None, None, detail).await?;
            let mut run = run.clone();
            run.trigger_data["delivery_id"] = serde_json::json!(delivery);
            let admitted = if throttled {
                runs::record_in(tx, &run, RunStatus::Throttled).await?
            } else {
                runs::admit_in(tx, &run).await?
            };
            let (id, status) = admitted
                .ok_or_else(|| StoreError::Database("a webhook run was not recorded".into()))?;
            sqlx::query("UPDATE deliveries SET run_id = ? WHERE id = ?")
                .bind(id)
                .bind(delivery)
                .execute(&mut *tx)
                .await?;
            (delivery, Some((id, status)))
        }
    };
    if let Some(key) = &d.dedup_key {
        sqlx::query("UPDATE webhook_dedup SET delivery_id = ?, run_id = ? WHERE runbook = ? AND trigger_key = ? AND dedup_key = ?")
            .bind(delivery)
            .bind(run.map(|r| r.0))
            .bind(&d.runbook)
            .bind(&d.trigger_key)
            .bind(key)
            .execute(&mut *tx)
            .await?;
    }
    Ok(match run {
        Some((run, status)) => Accepted::Run {
            delivery,
            run,
            status,
        },
        None => Accepted::Recorded { delivery },
    })
}

/// Runs of a runbook created since `since` that count against its `limit:`
/// (firings that did not run do not).
async fn count_since(
    tx: &mut SqliteConnection,
    runbook: &str,
    since: DateTime<Utc>,
) -> Result<i64> {
    let [a, b, c] = RunStatus::NOT_RUN;
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE runbook = ? AND created_at >= ? AND status NOT IN (?, ?, ?)",
    )
    .bind(runbook)
    .bind(ts(since))
    .bind(a)
    .bind(b)
    .bind(c)
    .fetch_one(&mut *tx)
    .await?)
}
