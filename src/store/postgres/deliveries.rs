//! PostgreSQL: webhook deliveries, accepted in batches (one transaction a
//! batch), with deduplication and rate limits decided inside the
//! transaction, whichever daemon receives them.
//!
//! Two daemons given the same delivery at once make one run: the dedup row's
//! primary key makes the second insert wait for the first transaction, and
//! the second then reads the original's delivery and run as committed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::rows::{opt_text, text};
use super::{PostgresStore, runs};
use crate::store::*;

/// Record a batch of deliveries, with their runs, in one transaction.
pub(super) async fn accept_deliveries(
    store: &PostgresStore,
    batch: &[Delivery],
) -> Result<Vec<Accepted>> {
    let mut tx = store.begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for d in batch {
        out.push(accept_one(&mut tx, d).await?);
    }
    tx.commit().await?;
    Ok(out)
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn list_deliveries(
        &self,
        runbook: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(
            "SELECT d.*, r.status AS run_status FROM deliveries d LEFT JOIN runs r ON r.id = d.run_id
             WHERE ($1::text IS NULL OR d.runbook = $1) AND ($2::bigint IS NULL OR d.id < $2)
             ORDER BY d.id DESC LIMIT $3",
        )
        .bind(runbook)
        .bind(before)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_row).collect()
    }
}

fn delivery_row(r: &PgRow) -> Result<DeliveryRow> {
    let headers: String = r.try_get("headers")?;
    Ok(DeliveryRow {
        id: r.try_get("id")?,
        runbook: r.try_get("runbook")?,
        trigger_key: r.try_get("trigger_key")?,
        received_at: r.try_get("received_at")?,
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
    tx: &mut PgConnection,
    d: &Delivery,
    outcome: DeliveryOutcome,
    run: Option<RunId>,
    duplicate_of: Option<i64>,
    detail: Option<&str>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO deliveries (runbook, trigger_key, received_at, dedup_key, outcome, run_id, duplicate_of, headers, body, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(&d.runbook)
    .bind(&d.trigger_key)
    .bind(d.received_at)
    .bind(opt_text(&d.dedup_key))
    .bind(outcome)
    .bind(run)
    .bind(duplicate_of)
    .bind(d.headers.to_string())
    .bind(text(&d.body))
    .bind(detail.map(text))
    .fetch_one(&mut *tx)
    .await?)
}

/// Claim the dedup key for this delivery; `Some((delivery, run))` of the
/// original when it is a repeat within the window.
///
/// A claim in progress in another transaction makes the insert wait for it
/// (the key's row stays locked until that transaction ends). When it
/// commits, the key is not claimed here (its window has not passed) and the
/// next statement, with a new snapshot, reads the original's delivery and
/// run as committed; when it rolls back, the key is claimed here.
async fn dedup(
    tx: &mut PgConnection,
    d: &Delivery,
    key: &str,
) -> Result<Option<(i64, Option<RunId>)>> {
    let claimed: Option<i32> = sqlx::query_scalar(
        "INSERT INTO webhook_dedup (runbook, trigger_key, dedup_key, delivery_id, run_id, expires_at)
         VALUES ($1, $2, $3, 0, NULL, $4)
         ON CONFLICT (runbook, trigger_key, dedup_key) DO UPDATE
             SET delivery_id = 0, run_id = NULL, expires_at = excluded.expires_at
             WHERE webhook_dedup.expires_at <= $5
         RETURNING 1",
    )
    .bind(&d.runbook)
    .bind(&d.trigger_key)
    .bind(text(key))
    .bind(d.dedup_until)
    .bind(d.received_at)
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_some() {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT delivery_id, run_id FROM webhook_dedup WHERE runbook = $1 AND trigger_key = $2 AND dedup_key = $3",
    )
    .bind(&d.runbook)
    .bind(&d.trigger_key)
    .bind(text(key))
    .fetch_one(&mut *tx)
    .await?;
    Ok(Some((row.try_get("delivery_id")?, row.try_get("run_id")?)))
}

async fn accept_one(tx: &mut PgConnection, d: &Delivery) -> Result<Accepted> {
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
            let (delivery, admitted) = run_delivery(tx, d, run, *limit).await?;
            (delivery, Some(admitted))
        }
    };
    if let Some(key) = &d.dedup_key {
        sqlx::query(
            "UPDATE webhook_dedup SET delivery_id = $1, run_id = $2
             WHERE runbook = $3 AND trigger_key = $4 AND dedup_key = $5",
        )
        .bind(delivery)
        .bind(run.map(|r| r.0))
        .bind(&d.runbook)
        .bind(&d.trigger_key)
        .bind(text(key))
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

/// Record a delivery that makes a run (throttled when its `limit:` is
/// reached), and its run; returns the delivery and the run.
async fn run_delivery(
    tx: &mut PgConnection,
    d: &Delivery,
    run: &NewRun,
    limit: Option<(u32, DateTime<Utc>)>,
) -> Result<(i64, (RunId, RunStatus))> {
    let throttled = match limit {
        Some((runs, since)) => count_since(tx, &run.runbook, since).await? >= runs as i64,
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
    let (id, status) =
        admitted.ok_or_else(|| StoreError::Database("a webhook run was not recorded".into()))?;
    sqlx::query("UPDATE deliveries SET run_id = $1 WHERE id = $2")
        .bind(id)
        .bind(delivery)
        .execute(&mut *tx)
        .await?;
    Ok((delivery, (id, status)))
}

/// Runs of a runbook created since `since` that count against its `limit:`
/// (firings that did not run do not).
///
/// Deliveries of one runbook are counted one transaction at a time (a lock
/// on the runbook's name, held until the transaction ends), so two daemons
/// never both take the last run the limit allows, as with SQLite's one
/// writer.
async fn count_since(tx: &mut PgConnection, runbook: &str, since: DateTime<Utc>) -> Result<i64> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('runbookd.limit:' || $1::text, 0))")
        .bind(runbook)
        .execute(&mut *tx)
        .await?;
    let [a, b, c] = RunStatus::NOT_RUN;
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE runbook = $1 AND created_at >= $2 AND status NOT IN ($3, $4, $5)",
    )
    .bind(runbook)
    .bind(since)
    .bind(a)
    .bind(b)
    .bind(c)
    .fetch_one(&mut *tx)
    .await?)
}
