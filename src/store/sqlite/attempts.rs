//! SQLite: runs from the queue to their end — claims, attempts under a
//! lease, fenced writes, and recovery of runs whose owner stopped.
//!
//! The fence is a condition of the write's first statement (or a statement
//! of its own at the start of its transaction): the write happens only while
//! the owner holds the attempt, so a write whose lease was lost changes
//! nothing. With one writer connection, the condition and the write cannot
//! be separated by another process's write.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use super::rows::insert_logs_in;
use super::{SqliteStore, is_active_conflict, run_row};
use crate::store::*;

/// The lease holds while its attempt is the latest of a run that is still
/// running (also while the run waits to retry, its last attempt ended). The
/// arguments are the positions of the attempt id, the owner and `running`.
macro_rules! held {
    () => {
        held!("1", "2", "3")
    };
    ($id:literal, $owner:literal, $running:literal) => {
        concat!(
            "attempts.id = ?",
            $id,
            " AND attempts.owner = ?",
            $owner,
            " AND attempts.attempt = (SELECT r.attempts FROM runs r",
            " WHERE r.id = attempts.run_id AND r.status = ?",
            $running,
            ")"
        )
    };
}

/// Fail with `Fenced` unless `lease` still holds its run.
async fn fence_in(tx: &mut SqliteConnection, lease: &Lease) -> Result<()> {
    let held = sqlx::query(concat!(
        "UPDATE attempts SET lease_until = lease_until WHERE ",
        held!()
    ))
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(RunStatus::Running)
    .execute(&mut *tx)
    .await?;
    if held.rows_affected() == 1 {
        Ok(())
    } else {
        Err(fenced(lease))
    }
}

pub(super) fn fenced(lease: &Lease) -> StoreError {
    StoreError::Fenced {
        run: lease.run,
        attempt: lease.number,
        owner: lease.owner.clone(),
    }
}

/// The fence for a write a run may make (issues, email, state); none for a person's.
pub(super) async fn fence_opt(tx: &mut SqliteConnection, fence: Option<&Lease>) -> Result<()> {
    match fence {
        Some(lease) => fence_in(tx, lease).await,
        None => Ok(()),
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn queued_runs(
        &self,
        runbook: Option<&str>,
        after: RunId,
        limit: u32,
    ) -> Result<Vec<RunRow>> {
        // Both read an index: `runs_queued` for one runbook, `runs_by_status` for all.
        let rows = match runbook {
            Some(name) => sqlx::query(
                "SELECT * FROM runs WHERE runbook = ? AND status = ? AND id > ? ORDER BY id LIMIT ?",
            )
            .bind(name),
            None => {
                sqlx::query("SELECT * FROM runs WHERE status = ? AND id > ? ORDER BY id LIMIT ?")
            }
        }
        .bind(RunStatus::Queued)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn claim(&self, run: RunId, active_key: &str) -> Result<bool> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query("UPDATE runs SET active_key = ? WHERE id = ? AND status = ?")
            .bind(active_key)
            .bind(run)
            .bind(RunStatus::Queued)
            .execute(&mut *tx)
            .await;
        keep_unless_active(tx, done).await
    }

    async fn start_attempt(
        &self,
        run: RunId,
        owner: &str,
        at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        // A queued run is anyone's; a running one (between retries) only its
        // latest attempt's owner's. The trigger `attempt_starts_run` makes
        // the run `running`; `attempts_one_running` refuses a second
        // running attempt. Written with other runs' starts (`recorder.rs`).
        self.recorder()?
            .start_attempt(run, owner, ts(at), ts(lease_until))
            .await
    }

    async fn start_attempt_early(
        &self,
        run: RunId,
        number: u32,
        owner: &str,
        at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<(Lease, Starting)>> {
        let started = self
            .recorder()?
            .start_early(run, number, owner, ts(at), ts(lease_until));
        Ok(Some(started.await?))
    }

    async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<bool> {
        // Renewed on the latest attempt while the run is the owner's, also
        // while it waits to retry (the attempt has ended, the run has not).
        let mut tx = self.write_one().await?;
        let asked: Option<bool> = sqlx::query_scalar(concat!(
            "UPDATE attempts SET lease_until = ?4 WHERE ",
            held!(),
            " RETURNING (SELECT cancel_requested FROM runs WHERE id = attempts.run_id)"
        ))
        .bind(lease.attempt)
        .bind(&lease.owner)
        .bind(RunStatus::Running)
        .bind(ts(until))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(asked) = asked else {
            return Err(fenced(lease));
        };
        tx.commit().await?;
        Ok(asked)
    }

    async fn request_cancel(&self, runbook: Option<&str>, run: RunId) -> Result<u64> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query(
            "UPDATE runs SET cancel_requested = 1 WHERE status = ?1
             AND CASE WHEN ?2 IS NULL THEN id = ?3 ELSE runbook = ?2 AND id < ?3 END",
        )
        .bind(RunStatus::Running)
        .bind(runbook)
        .bind(run)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn insert_step(&self, lease: &Lease, s: &StepRow, lines: &[LogRow]) -> Result<()> {
        // Without log lines the step is one statement, fenced by its condition.
        let mut tx = if lines.is_empty() {
            self.write_one().await?
        } else {
            self.write().await?
        };
        if !insert_step_in(&mut tx, lease, s).await? {
            return Err(fenced(lease));
        }
        insert_logs_in(&mut tx, lines).await?;
        tx.commit().await
    }

    async fn insert_logs(&self, lease: &Lease, lines: &[LogRow]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        fence_in(&mut tx, lease).await?;
        insert_logs_in(&mut tx, lines).await?;
        tx.commit().await
    }

    async fn finish_attempt(
        &self,
        lease: &Lease,
        status: RunStatus,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query(
            "UPDATE attempts SET status = ?, error = ?, finished_at = ?
             WHERE id = ? AND owner = ? AND status = ?",
        )
        .bind(status)
        .bind(error.map(cap_text))
        .bind(ts(at))
        .bind(lease.attempt)
        .bind(&lease.owner)
        .bind(RunStatus::Running)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(fenced(lease));
        }
        tx.commit().await
    }

    async fn finish(
        &self,
        lease: &Lease,
        step: Option<&StepRow>,
        lines: &[LogRow],
        end: &RunEnd,
    ) -> Result<()> {
        // Written with other runs' ends (`recorder.rs`).
        self.recorder()?.finish(lease, step, lines, end).await
    }

    async fn end_waiting(&self, run: RunId, from: RunStatus, end: &RunEnd) -> Result<bool> {
        debug_assert!(
            !matches!(from, RunStatus::Running),
            "a running run ends fenced"
        );
        let mut tx = self.write_one().await?;
        let ended = end_run_in(&mut tx, run, Some(from), end).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn requeue(&self, run: RunId, active_key: Option<&str>) -> Result<bool> {
        // With the runbook's key, then (when another run holds it) without.
        for key in [active_key, None] {
            let mut tx = self.write_one().await?;
            let done = sqlx::query(
                "UPDATE runs SET status = ?, finished_at = NULL, error = NULL, active_key = ?
                 WHERE id = ? AND status = ? AND cancel_requested = 0",
            )
            .bind(RunStatus::Queued)
            .bind(key)
            .bind(run)
            .bind(RunStatus::Interrupted)
            .execute(&mut *tx)
            .await;
            match done {
                Err(e) if key.is_some() && is_active_conflict(&e) => continue,
                done => return keep_unless_active(tx, done).await,
            }
        }
        Ok(false)
    }

    async fn recover(&self, expired_by: DateTime<Utc>, now: DateTime<Utc>) -> Result<Vec<RunRow>> {
        let mut tx = self.write().await?;
        // Running runs whose latest attempt's lease has expired.
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE id IN (
                 SELECT r.id FROM runs r JOIN attempts a ON a.run_id = r.id AND a.attempt = r.attempts
                 WHERE r.status = ?1 AND (a.lease_until IS NULL OR a.lease_until <= ?2))
             ORDER BY id",
        )
        .bind(RunStatus::Running)
        .bind(ts(expired_by))
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<RunId> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<std::result::Result<_, _>>()?;
        let end = RunEnd {
            status: RunStatus::Interrupted,
            output: None,
            error: Some(crate::store::STOPPED.into()),
            at: now,
        };
        for id in &ids {
            end_run_in(&mut tx, *id, Some(RunStatus::Running), &end).await?;
        }
        tx.commit().await?;
        rows.iter().map(run_row).collect()
    }

    async fn clock_offset(&self) -> Result<Option<chrono::TimeDelta>> {
        Ok(None)
    }

    fn sole_writer(&self) -> bool {
        self._lock.is_some()
    }
}

/// A step of an attempt `lease` still holds; false (nothing written) when it
/// does not.
pub(super) async fn insert_step_in(
    tx: &mut SqliteConnection,
    lease: &Lease,
    s: &StepRow,
) -> Result<bool> {
    let done = sqlx::query(concat!(
        "INSERT INTO steps (attempt_id, position, name, status, started_at, finished_at, output, error)
         SELECT ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 WHERE EXISTS (SELECT 1 FROM attempts WHERE ",
        held!(),
        ")"
    ))
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(RunStatus::Running)
    .bind(s.attempt_id)
    .bind(s.position as i64)
    .bind(&s.name)
    .bind(s.status)
    .bind(ts(s.started_at))
    .bind(ts(s.finished_at))
    .bind(s.output.as_ref().map(cap_json))
    .bind(s.error.as_deref().map(cap_text))
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The end of the run `lease` still holds; false (nothing written) when it
/// does not.
pub(super) async fn end_held_run_in(
    tx: &mut SqliteConnection,
    lease: &Lease,
    end: &RunEnd,
) -> Result<bool> {
    let done = sqlx::query(concat!(
        "UPDATE runs SET status = ?4, output = ?5, error = ?6, finished_at = ?7, active_key = NULL
         WHERE id = ?8 AND EXISTS (SELECT 1 FROM attempts WHERE ",
        held!(),
        ")"
    ))
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(RunStatus::Running)
    .bind(end.status)
    .bind(end.output.as_ref().map(cap_json))
    .bind(end.error.as_deref().map(cap_text))
    .bind(ts(end.at))
    .bind(lease.run)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Record a run's end (only from `from` when given); the run leaves the
/// one-active-run index, and the trigger closes its open attempt. Returns
/// whether the run was changed.
pub(super) async fn end_run_in(
    tx: &mut SqliteConnection,
    run: RunId,
    from: Option<RunStatus>,
    end: &RunEnd,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE runs SET status = ?, output = ?, error = ?, finished_at = ?, active_key = NULL
         WHERE id = ? AND (?6 IS NULL OR status = ?6)",
    )
    .bind(end.status)
    .bind(end.output.as_ref().map(cap_json))
    .bind(end.error.as_deref().map(cap_text))
    .bind(ts(end.at))
    .bind(run)
    .bind(from)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
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
