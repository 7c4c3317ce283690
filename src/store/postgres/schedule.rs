//! PostgreSQL: schedule marks, and due slots recorded with their runs. Two
//! daemons recording the same trigger's slots take turns on the trigger's
//! mark row; a slot another daemon recorded first is a duplicate
//! (`UNIQUE (runbook, trigger_key, scheduled_at)`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{PostgresStore, runs};
use crate::store::*;

#[async_trait]
impl ScheduleStore for PostgresStore {
    async fn schedule_mark(&self, runbook: &str, key: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT last_slot FROM schedule_marks WHERE runbook = $1 AND trigger_key = $2",
        )
        .bind(runbook)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
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
        // A mark another daemon recorded meanwhile is kept, and returned.
        Ok(sqlx::query_scalar(
            "INSERT INTO schedule_marks (runbook, trigger_key, last_slot, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (runbook, trigger_key) DO UPDATE SET last_slot = schedule_marks.last_slot
             RETURNING last_slot",
        )
        .bind(runbook)
        .bind(key)
        .bind(at)
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Record due slots and move the mark, in one transaction.
pub(super) async fn record_slots(store: &PostgresStore, b: &SlotBatch) -> Result<Vec<SlotResult>> {
    let mut tx = store.begin().await?;
    // The mark only moves forward, whatever the clock says. Its row stays
    // locked until the commit, so another daemon recording this trigger
    // waits, then finds the slots recorded here already have their runs.
    sqlx::query(
        "INSERT INTO schedule_marks (runbook, trigger_key, last_slot, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (runbook, trigger_key) DO UPDATE
         SET last_slot = GREATEST(schedule_marks.last_slot, excluded.last_slot), updated_at = excluded.updated_at",
    )
    .bind(&b.runbook)
    .bind(&b.trigger_key)
    .bind(b.mark)
    .bind(b.now)
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
