//! SQLite: the one statement that records a new run, and how a run is
//! admitted beside the active runs of its runbook. Every path that records
//! runs (manual runs, webhook deliveries, schedule slots) writes through
//! [`admit_in`], and only the run intake (`src/run/intake`) reaches them.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::{SqliteStore, deliveries, is_active_conflict, schedule};
use crate::store::*;

/// Record `run` with `status`; the runbook's name as `active_key` makes it
/// the runbook's one active run (the index refuses a second). `None` when
/// its slot already has a run (a schedule slot is recorded once).
async fn insert_in(
    tx: &mut SqliteConnection,
    run: &NewRun,
    status: RunStatus,
    active: bool,
) -> std::result::Result<Option<RunId>, sqlx::Error> {
    // A run that does not wait in the queue is over as soon as it is recorded.
    let finished = (status != RunStatus::Queued).then(|| ts(run.created_at));
    sqlx::query_scalar(
        "INSERT INTO runs (runbook, version_hash, trigger_kind, trigger_key, scheduled_at, status,
                           params, trigger_data, dry_run, created_at, finished_at, active_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (runbook, trigger_key, scheduled_at) DO NOTHING RETURNING id",
    )
    .bind(&run.runbook)
    .bind(&run.version_hash)
    .bind(run.trigger_kind)
    .bind(&run.trigger_key)
    .bind(run.scheduled_at.map(ts))
    .bind(status)
    .bind(cap_json(&run.params))
    .bind(run.trigger_data.to_string())
    .bind(run.dry_run)
    .bind(ts(run.created_at))
    .bind(finished)
    .bind(active.then_some(&run.runbook))
    .fetch_optional(&mut *tx)
    .await
}

/// Record a run as its admission says: queued, or (under `forbid` while
/// another run is active) skipped or refused. `None` when its slot already
/// has a run.
///
/// Fails with `Conflict` for [`Admission::RefuseIfActive`] while another run
/// is active, and when the database cannot write.
pub(super) async fn admit_in(
    tx: &mut SqliteConnection,
    run: &NewRun,
) -> Result<Option<(RunId, RunStatus)>> {
    let exclusive = matches!(
        run.admission,
        Admission::SkipIfActive | Admission::RefuseIfActive
    );
    match insert_in(tx, run, RunStatus::Queued, exclusive).await {
        Ok(id) => Ok(id.map(|id| (id, RunStatus::Queued))),
        Err(e) if is_active_conflict(&e) && run.admission == Admission::SkipIfActive => {
            record_in(tx, run, RunStatus::Skipped).await
        }
        Err(e) if is_active_conflict(&e) => Err(StoreError::Conflict(format!(
            "runbook {} already has an active run and does not allow another (concurrency: forbid)",
            run.runbook
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Record a firing that does not run (`throttled`, `missed`, `skipped`).
pub(super) async fn record_in(
    tx: &mut SqliteConnection,
    run: &NewRun,
    status: RunStatus,
) -> Result<Option<(RunId, RunStatus)>> {
    Ok(insert_in(tx, run, status, false)
        .await?
        .map(|id| (id, status)))
}

#[async_trait]
impl IntakeStore for SqliteStore {
    async fn insert_run(&self, run: &NewRun) -> Result<(RunId, RunStatus)> {
        let mut tx = self.write().await?;
        let admitted = admit_in(&mut tx, run).await?.ok_or_else(|| {
            StoreError::Conflict(format!("this slot of {} already has its run", run.runbook))
        })?;
        tx.commit().await?;
        Ok(admitted)
    }

    async fn accept_deliveries(&self, batch: &[Delivery]) -> Result<Vec<Accepted>> {
        deliveries::accept_deliveries(self, batch).await
    }

    async fn record_slots(&self, batch: &SlotBatch) -> Result<Vec<SlotResult>> {
        schedule::record_slots(self, batch).await
    }
}
