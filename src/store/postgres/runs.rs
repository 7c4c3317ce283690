//! PostgreSQL: the one statement that records a new run, and how a run is
//! admitted beside the active runs of its runbook, whichever daemon records
//! it. Every path that records runs writes through [`admit_in`], and only the
//! run intake (`src/run/intake`) reaches them.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::{PostgresStore, again};
use crate::store::*;

/// Record `run` with `status`; the runbook's name as `active_key` makes it
/// the runbook's one active run. `None` when a constraint kept it out: its
/// slot already has a run, or (when `active`) another run is active. A
/// conflict does not abort the transaction, so a batch goes on.
async fn insert_in(
    tx: &mut PgConnection,
    run: &NewRun,
    status: RunStatus,
    active: bool,
) -> Result<Option<RunId>> {
    // A run that does not wait in the queue is over as soon as it is recorded.
    let finished = (status != RunStatus::Queued).then_some(run.created_at);
    Ok(sqlx::query_scalar(
        "INSERT INTO runs (runbook, version_hash, trigger_kind, trigger_key, scheduled_at, status,
                           params, trigger_data, dry_run, created_at, finished_at, active_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(&run.runbook)
    .bind(&run.version_hash)
    .bind(run.trigger_kind)
    .bind(&run.trigger_key)
    .bind(run.scheduled_at)
    .bind(status)
    .bind(cap_json(&run.params))
    .bind(run.trigger_data.to_string())
    .bind(run.dry_run)
    .bind(run.created_at)
    .bind(finished)
    .bind(active.then_some(&run.runbook))
    .fetch_optional(&mut *tx)
    .await?)
}

/// Record a run as its admission says: queued, or (under `forbid` while
/// another run is active) skipped or refused. `None` when its slot already
/// has a run.
///
/// Fails with `Conflict` for [`Admission::RefuseIfActive`] while another run
/// is active, and when the database cannot write.
pub(super) async fn admit_in(
    tx: &mut PgConnection,
    run: &NewRun,
) -> Result<Option<(RunId, RunStatus)>> {
    let exclusive = matches!(
        run.admission,
        Admission::SkipIfActive | Admission::RefuseIfActive
    );
    match insert_in(tx, run, RunStatus::Queued, exclusive).await? {
        Some(id) => Ok(Some((id, RunStatus::Queued))),
        // Only the slot's constraint applies: the slot has its run.
        None if !exclusive => Ok(None),
        // Skipped, unless the slot has its run.
        None if run.admission == Admission::SkipIfActive => {
            record_in(tx, run, RunStatus::Skipped).await
        }
        // A person's run has no slot: another run is active.
        None => Err(StoreError::Conflict(format!(
            "runbook {} already has an active run and does not allow another (concurrency: forbid)",
            run.runbook
        ))),
    }
}

/// Record a firing that does not run (`throttled`, `missed`, `skipped`).
pub(super) async fn record_in(
    tx: &mut PgConnection,
    run: &NewRun,
    status: RunStatus,
) -> Result<Option<(RunId, RunStatus)>> {
    Ok(insert_in(tx, run, status, false)
        .await?
        .map(|id| (id, status)))
}

#[async_trait]
impl IntakeStore for PostgresStore {
    async fn insert_run(&self, run: &NewRun) -> Result<(RunId, RunStatus)> {
        again(|| async {
            let mut tx = self.begin().await?;
            let admitted = admit_in(&mut tx, run).await?.ok_or_else(|| {
                StoreError::Conflict(format!("this slot of {} already has its run", run.runbook))
            })?;
            tx.commit().await?;
            Ok(admitted)
        })
        .await
    }

    async fn accept_deliveries(&self, batch: &[Delivery]) -> Result<Vec<Accepted>> {
        again(|| super::deliveries::accept_deliveries(self, batch)).await
    }

    async fn record_slots(&self, batch: &SlotBatch) -> Result<Vec<SlotResult>> {
        again(|| super::schedule::record_slots(self, batch)).await
    }
}
