//! SQLite: slots and marks, the queue, recovery after a crash, retention.

use super::rows::{required, status_col};
use super::{SqliteStore, is_active_conflict, run_row, time_col};
use crate::store::*;
use chrono::{DateTime, Utc};

impl SqliteStore {
    pub(super) async fn queued(
        &self,
        runbook: Option<&str>,
        after: RunId,
        limit: u32,
    ) -> Result<Vec<RunRow>> {
        // Both read an index: `runs_queued` for one runbook, `runs_by_status` for all.
        let rows = match runbook {
            Some(name) => sqlx::query(
                "SELECT * FROM runs WHERE runbook = ? AND status = 'queued' AND id > ? ORDER BY id LIMIT ?",
            )
            .bind(name),
            None => sqlx::query(
                "SELECT * FROM runs WHERE status = 'queued' AND id > ? ORDER BY id LIMIT ?",
            ),
        }
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    pub(super) async fn claim_run(&self, run: RunId, active_key: &str) -> Result<bool> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query("UPDATE runs SET active_key = ? WHERE id = ? AND status = 'queued'")
            .bind(active_key)
            .bind(run)
            .execute(&mut *tx)
            .await;
        keep_unless_active(tx, done).await
    }

    pub(super) async fn requeue_run(&self, run: RunId, active_key: Option<&str>) -> Result<bool> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query(
            "UPDATE runs SET status = 'queued', finished_at = NULL, error = NULL, active_key = ? WHERE id = ?",
        )
        .bind(active_key)
        .bind(run)
        .execute(&mut *tx)
        .await;
        keep_unless_active(tx, done).await
    }

    pub(super) async fn recover(&self, at: DateTime<Utc>) -> Result<Vec<RunRow>> {
        let mut tx = self.write().await?;
        let rows = sqlx::query("SELECT * FROM runs WHERE status = 'running' ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
        let at = ts(at);
        sqlx::query(
            "UPDATE attempts SET status = 'interrupted', finished_at = ?,
                 error = 'the process running it stopped before it finished'
             WHERE status = 'running'",
        )
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE runs SET status = 'interrupted', finished_at = ?, active_key = NULL,
                 error = 'the process running it stopped before it finished'
             WHERE status = 'running'",
        )
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(run_row).collect()
    }

    pub(super) async fn last_of_many(
        &self,
        runbooks: &[String],
    ) -> Result<std::collections::HashMap<String, LastRun>> {
        let names =
            serde_json::to_string(runbooks).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // One row per runbook: a seek on `(runbook, id)` for its latest run,
        // and a walk back along the same index to its latest success (the
        // `+` keeps SQLite off the status index, which would visit every
        // succeeded run). Only the columns lists show are read.
        let rows = sqlx::query(
            "SELECT n.value AS name, r.id, r.status, r.created_at, r.started_at, r.finished_at, r.error,
                    (SELECT finished_at FROM runs s WHERE s.runbook = n.value AND +s.status = 'succeeded' AND s.dry_run = 0
                     ORDER BY id DESC LIMIT 1) AS last_success
             FROM json_each(?) n
             LEFT JOIN runs r ON r.id = (SELECT id FROM runs r2 WHERE r2.runbook = n.value ORDER BY id DESC LIMIT 1)",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await?;
        let mut out = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let name: String = sqlx::Row::try_get(row, "name")?;
            let id: Option<RunId> = sqlx::Row::try_get(row, "id")?;
            let run = match id {
                Some(id) => Some(RunSummary {
                    id,
                    status: status_col(row, "status")?,
                    created_at: required(time_col(row, "created_at")?, "created_at")?,
                    started_at: time_col(row, "started_at")?,
                    finished_at: time_col(row, "finished_at")?,
                    error: sqlx::Row::try_get(row, "error")?,
                }),
                None => None,
            };
            let last_success = time_col(row, "last_success")?;
            out.insert(name, LastRun { run, last_success });
        }
        Ok(out)
    }

    pub(super) async fn prune_before(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut total = 0;
        // In batches, so a large prune never holds the write lock for long.
        loop {
            let mut tx = self.write_one().await?;
            let done = sqlx::query(
                "DELETE FROM runs WHERE id IN (
                     SELECT id FROM runs WHERE created_at < ? AND status NOT IN ('queued', 'running') LIMIT 5000)",
            )
            .bind(ts(before))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            total += done.rows_affected();
            if done.rows_affected() == 0 {
                return Ok(total);
            }
        }
    }

    pub(super) async fn mark_of(&self, runbook: &str, key: &str) -> Result<Option<DateTime<Utc>>> {
        let row = sqlx::query(
            "SELECT last_slot FROM schedule_marks WHERE runbook = ? AND trigger_key = ?",
        )
        .bind(runbook)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => time_col(&r, "last_slot"),
            None => Ok(None),
        }
    }

    pub(super) async fn first_mark(
        &self,
        runbook: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        if let Some(mark) = self.mark_of(runbook, key).await? {
            return Ok(mark);
        }
        let mut tx = self.write_one().await?;
        let mark: String = sqlx::query_scalar(
            "INSERT INTO schedule_marks (runbook, trigger_key, last_slot, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (runbook, trigger_key) DO UPDATE SET last_slot = last_slot RETURNING last_slot",
        )
        .bind(runbook)
        .bind(key)
        .bind(ts(at))
        .bind(ts(at))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        parse_ts(&mark)
    }

    pub(super) async fn slots(&self, b: &SlotBatch) -> Result<Vec<SlotResult>> {
        let mut tx = self.write().await?;
        // The mark only moves forward, whatever the clock says.
        sqlx::query(
            "INSERT INTO schedule_marks (runbook, trigger_key, last_slot, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (runbook, trigger_key) DO UPDATE
             SET last_slot = MAX(last_slot, excluded.last_slot), updated_at = excluded.updated_at",
        )
        .bind(&b.runbook)
        .bind(&b.trigger_key)
        .bind(ts(b.mark))
        .bind(ts(b.now))
        .execute(&mut *tx)
        .await?;
        let params = cap_json(&b.params);
        let now = ts(b.now);
        // One row per slot: finished at once unless queued.
        let insert = |slot: DateTime<Utc>, status: &'static str, active: Option<String>| {
            let finished = (status != "queued").then(|| now.clone());
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO runs (runbook, version_hash, trigger_kind, trigger_key, scheduled_at, status,
                                   params, created_at, finished_at, active_key)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (runbook, trigger_key, scheduled_at) DO NOTHING RETURNING id",
            )
            .bind(b.runbook.clone())
            .bind(b.version_hash.clone())
            .bind(b.trigger_kind.clone())
            .bind(b.trigger_key.clone())
            .bind(ts(slot))
            .bind(status)
            .bind(params.clone())
            .bind(now.clone())
            .bind(finished)
            .bind(active)
        };
        for slot in &b.missed {
            insert(*slot, "missed", None)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let mut out = Vec::new();
        // Under `forbid`, the first due slot takes the runbook (or is skipped
        // when a run is active); the slots caught up with it queue behind it
        // rather than skip each other.
        let mut admission = b.admission;
        for slot in &b.run {
            let active = (admission == Admission::Exclusive).then(|| b.runbook.clone());
            let queued = insert(*slot, "queued", active)
                .fetch_optional(&mut *tx)
                .await;
            let conflicted = matches!(&queued, Err(e) if is_active_conflict(e));
            if admission == Admission::Exclusive && !conflicted {
                admission = Admission::Queued;
            }
            out.push(match queued {
                Ok(Some(id)) => SlotResult::Created(id, *slot),
                Ok(None) => SlotResult::Duplicate(*slot),
                Err(e) if is_active_conflict(&e) => match insert(*slot, "skipped", None)
                    .fetch_optional(&mut *tx)
                    .await?
                {
                    Some(id) => SlotResult::Skipped(id, *slot),
                    None => SlotResult::Duplicate(*slot),
                },
                Err(e) => return Err(e.into()),
            });
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// Commit an update that the one-active-run index may refuse: true when it
/// changed a row, false when it changed none or was refused (and undone).
async fn keep_unless_active(
    tx: super::writer::Lease<'_>,
    done: std::result::Result<sqlx::sqlite::SqliteQueryResult, sqlx::Error>,
) -> Result<bool> {
    match done {
        Ok(d) => {
            tx.commit().await?;
            Ok(d.rows_affected() == 1)
        }
        Err(e) if is_active_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
