//! SQLite: webhook deliveries, accepted in batches (group commit), with
//! deduplication and rate limits decided inside the transaction.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{SqliteStore, is_active_conflict, time_col};
use crate::store::*;

impl SqliteStore {
    pub(super) async fn accept(&self, batch: &[Delivery]) -> Result<Vec<Accepted>> {
        let mut tx = self.write().await?;
        let mut out = Vec::with_capacity(batch.len());
        for d in batch {
            out.push(accept_one(&mut tx, d).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(super) async fn deliveries(
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
    let status: Option<String> = r.try_get("run_status")?;
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
        run_status: status.as_deref().and_then(RunStatus::parse),
    })
}

async fn insert_delivery(
    tx: &mut SqliteConnection,
    d: &Delivery,
    outcome: &str,
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
    // A delivery rejected as unreadable does not take its key: the sender's
    // corrected retry must not count as a repeat.
    let rejected = matches!(
        &d.fate,
        Fate::Record {
            outcome: "rejected",
            ..
        }
    );
    let dedup_key = d.dedup_key.as_ref().filter(|_| !rejected);
    if let Some(key) = dedup_key
        && let Some((original, run)) = dedup(tx, d, key).await?
    {
        let delivery = insert_delivery(tx, d, "duplicate", run, Some(original), None).await?;
        return Ok(Accepted::Duplicate {
            delivery,
            original,
            run,
        });
    }
    let (delivery, run) = match &d.fate {
        Fate::Record { outcome, detail } => (
            insert_delivery(tx, d, outcome, None, None, Some(detail)).await?,
            None,
        ),
        Fate::Run {
            run,
            admission,
            limit,
        } => {
            let throttled = match limit {
                Some((runs, since)) => count_since(tx, &run.runbook, *since).await? >= *runs as i64,
                None => false,
            };
            let (outcome, detail) = if throttled {
                ("throttled", Some("the runbook's `limit:` was reached"))
            } else {
                ("accepted", None)
            };
            let delivery = insert_delivery(tx, d, outcome, None, None, detail).await?;
            let mut run = run.clone();
            run.trigger_data["delivery_id"] = serde_json::json!(delivery);
            let (id, status) = insert_webhook_run(tx, &run, *admission, throttled).await?;
            sqlx::query("UPDATE deliveries SET run_id = ? WHERE id = ?")
                .bind(id)
                .bind(delivery)
                .execute(&mut *tx)
                .await?;
            (delivery, Some((id, status)))
        }
    };
    if let Some(key) = dedup_key {
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

/// Runs of a runbook started since `since` that count against its `limit:`.
async fn count_since(
    tx: &mut SqliteConnection,
    runbook: &str,
    since: DateTime<Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE runbook = ? AND created_at >= ? AND status NOT IN ('throttled', 'skipped', 'missed')",
    )
    .bind(runbook)
    .bind(ts(since))
    .fetch_one(&mut *tx)
    .await?)
}

async fn insert_webhook_run(
    tx: &mut SqliteConnection,
    run: &NewRun,
    admission: Admission,
    throttled: bool,
) -> Result<(RunId, RunStatus)> {
    let insert = |status: RunStatus, active: Option<String>| {
        let finished = (status != RunStatus::Queued).then(|| ts(run.created_at));
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO runs (runbook, version_hash, trigger_kind, trigger_key, scheduled_at, status, params,
                               trigger_data, dry_run, created_at, finished_at, active_key)
             VALUES (?, ?, 'webhook', ?, NULL, ?, ?, ?, 0, ?, ?, ?) RETURNING id",
        )
        .bind(run.runbook.clone())
        .bind(run.version_hash.clone())
        .bind(run.trigger_key.clone())
        .bind(status.as_str())
        .bind(cap_json(&run.params))
        .bind(run.trigger_data.to_string())
        .bind(ts(run.created_at))
        .bind(finished)
        .bind(active)
    };
    if throttled {
        return Ok((
            insert(RunStatus::Throttled, None)
                .fetch_one(&mut *tx)
                .await?,
            RunStatus::Throttled,
        ));
    }
    let active = (admission == Admission::Exclusive).then(|| run.runbook.clone());
    match insert(RunStatus::Queued, active).fetch_one(&mut *tx).await {
        Ok(id) => Ok((id, RunStatus::Queued)),
        Err(e) if is_active_conflict(&e) => Ok((
            insert(RunStatus::Skipped, None).fetch_one(&mut *tx).await?,
            RunStatus::Skipped,
        )),
        Err(e) => Err(e.into()),
    }
}
