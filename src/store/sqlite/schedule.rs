//! SQLite: schedule marks, and due slots recorded with their runs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SqliteStore, runs, time_col};
use crate::store::*;

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn schedule_mark(&self, runbook: &str, key: &str) -> Result<Option<DateTime<Utc>>> {
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

    async fn init_mark(
        &self,
        runbook: &str,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        if let Some(mark) = self.schedule_mark(runbook, key).await? {
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
}

/// Record due slots and move the mark, in one transaction.
pub(super) async fn record_slots(store: &SqliteStore, b: &SlotBatch) -> Result<Vec<SlotResult>> {
    let mut tx = store.write().await?;
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
    for run in &b.missed {
        runs::record_in(&mut tx, run, RunStatus::Missed).await?;
    }
    let mut out = Vec::with_capacity(b.runs.len());
    let mut taken = false;
    for run in &b.runs {
        let slot = run.scheduled_at.unwrap_or(b.now);
        let mut run = std::borrow::Cow::Borrowed(run);
        if taken && run.admission == Admission::SkipIfActive {
            run.to_mut().admission = Admission::Queued;
        }
        let result = match runs::admit_in(&mut tx, &run).await? {
            Some((id, RunStatus::Skipped)) => SlotResult::Skipped(id, slot),
            Some((id, _)) => SlotResult::Created(id, slot),
            None => SlotResult::Duplicate(slot),
        };
        taken |= !matches!(result, SlotResult::Skipped(..));
        out.push(result);
    }
    tx.commit().await?;
    Ok(out)
}
