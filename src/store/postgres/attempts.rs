//! PostgreSQL: runs from the queue to their end — claims, attempts under a
//! lease, fenced writes, and recovery of runs whose owner stopped, with
//! several daemons on one database.
//!
//! The fence: a write of a running attempt first locks its run's row (`FOR
//! SHARE`) on the condition that the attempt is still the run's latest,
//! still running and still its owner's. Recovery updates that row, so it
//! waits for a fenced write in progress (or skips the run, `SKIP LOCKED`,
//! until the next round), and a fenced write that comes after recovery finds
//! the condition false and writes nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::rows::{capped, insert_logs_in};
use super::{PostgresStore, is_active_conflict, run_row};
use crate::store::*;

/// The lease holds while its attempt is the latest of a run that is still
/// running (also while the run waits to retry). Binds: $1 run, $2 attempt
/// number, $3 attempt id, $4 owner, $5 `running`.
macro_rules! held {
    () => {
        "runs.id = $1 AND runs.status = $5 AND runs.attempts = $2 AND EXISTS (
             SELECT 1 FROM attempts a WHERE a.id = $3 AND a.run_id = $1 AND a.attempt = $2 AND a.owner = $4)"
    };
}

/// Bind the five values of [`held!`].
macro_rules! bind_held {
    ($q:expr, $lease:expr) => {
        $q.bind($lease.run)
            .bind($lease.number as i32)
            .bind($lease.attempt)
            .bind(&$lease.owner)
            .bind(RunStatus::Running)
    };
}

/// Fail with `Fenced` unless `lease` still holds its run; the run's row
/// stays locked (shared) until the transaction ends. Returns whether the run
/// was asked to stop.
pub(super) async fn fence_in(tx: &mut PgConnection, lease: &Lease) -> Result<bool> {
    let held: Option<bool> = bind_held!(
        sqlx::query_scalar(concat!(
            "SELECT cancel_requested FROM runs WHERE ",
            held!(),
            " FOR SHARE"
        )),
        lease
    )
    .fetch_optional(&mut *tx)
    .await?;
    held.ok_or_else(|| fenced(lease))
}

fn fenced(lease: &Lease) -> StoreError {
    StoreError::Fenced {
        run: lease.run,
        attempt: lease.number,
        owner: lease.owner.clone(),
    }
}

/// The fence for a write a run may make (issues, email, state); none for a person's.
pub(super) async fn fence_opt(tx: &mut PgConnection, fence: Option<&Lease>) -> Result<()> {
    match fence {
        Some(lease) => fence_in(tx, lease).await.map(|_| ()),
        None => Ok(()),
    }
}

/// True when the update changed a row, false when it changed none or the
/// one-active-run index refused it.
fn unless_active(
    done: std::result::Result<sqlx::postgres::PgQueryResult, sqlx::Error>,
) -> Result<bool> {
    match done {
        Ok(d) => Ok(d.rows_affected() == 1),
        Err(e) if is_active_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl RunStore for PostgresStore {
    async fn queued_runs(
        &self,
        runbook: Option<&str>,
        after: RunId,
        limit: u32,
    ) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE ($1::text IS NULL OR runbook = $1) AND status = $2 AND id > $3
             ORDER BY id LIMIT $4",
        )
        .bind(runbook)
        .bind(RunStatus::Queued)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_row).collect()
    }

    async fn claim(&self, run: RunId, active_key: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE runs SET active_key = $1 WHERE id = $2 AND status = $3")
            .bind(active_key)
            .bind(run)
            .bind(RunStatus::Queued)
            .execute(&self.pool)
            .await;
        unless_active(done)
    }

    async fn start_attempt(
        &self,
        run: RunId,
        owner: &str,
        at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        self.start_numbered(run, None, owner, at, lease_until).await
    }

    async fn start_attempt_early(
        &self,
        run: RunId,
        number: u32,
        owner: &str,
        at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<(Lease, Starting)>> {
        // Written before answering: several daemons take from one queue,
        // so a run runs only once its start is committed.
        let started = self
            .start_numbered(run, Some(number), owner, at, lease_until)
            .await?;
        Ok(started.map(|lease| (lease, Starting::made_already(Pending::done()))))
    }

    async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        let asked = fence_in(&mut tx, lease).await?;
        sqlx::query("UPDATE attempts SET lease_until = $1 WHERE id = $2")
            .bind(until)
            .bind(lease.attempt)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(asked)
    }

    async fn request_cancel(&self, runbook: Option<&str>, run: RunId) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE runs SET cancel_requested = TRUE WHERE status = $1
             AND CASE WHEN $2::text IS NULL THEN id = $3 ELSE runbook = $2 AND id < $3 END",
        )
        .bind(RunStatus::Running)
        .bind(runbook)
        .bind(run)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn insert_step(&self, lease: &Lease, s: &StepRow, lines: &[LogRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        fence_in(&mut tx, lease).await?;
        insert_step_in(&mut tx, s).await?;
        insert_logs_in(&mut tx, lines).await?;
        Ok(tx.commit().await?)
    }

    async fn insert_logs(&self, lease: &Lease, lines: &[LogRow]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        fence_in(&mut tx, lease).await?;
        insert_logs_in(&mut tx, lines).await?;
        Ok(tx.commit().await?)
    }

    async fn finish_attempt(
        &self,
        lease: &Lease,
        status: RunStatus,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        fence_in(&mut tx, lease).await?;
        let done = sqlx::query(
            "UPDATE attempts SET status = $1, error = $2, finished_at = $3 WHERE id = $4 AND status = $5",
        )
        .bind(status)
        .bind(error.map(capped))
        .bind(at)
        .bind(lease.attempt)
        .bind(RunStatus::Running)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(fenced(lease));
        }
        Ok(tx.commit().await?)
    }

    async fn finish(
        &self,
        lease: &Lease,
        step: Option<&StepRow>,
        lines: &[LogRow],
        end: &RunEnd,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        // One update, on the fence's condition: it locks the run's row
        // itself, and the trigger closes the open attempt.
        let done = bind_held!(
            sqlx::query(concat!(
                "UPDATE runs SET status = $6, output = $7, error = $8, finished_at = $9, active_key = NULL WHERE ",
                held!()
            )),
            lease
        )
        .bind(end.status)
        .bind(end.output.as_ref().map(cap_json))
        .bind(end.error.as_deref().map(capped))
        .bind(end.at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(fenced(lease));
        }
        if let Some(s) = step {
            insert_step_in(&mut tx, s).await?;
        }
        insert_logs_in(&mut tx, lines).await?;
        Ok(tx.commit().await?)
    }

    async fn end_waiting(&self, run: RunId, from: RunStatus, end: &RunEnd) -> Result<bool> {
        debug_assert!(
            !matches!(from, RunStatus::Running),
            "a running run ends fenced"
        );
        let mut tx = self.begin().await?;
        let ended = end_run_in(&mut tx, run, from, end).await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn requeue(&self, run: RunId, active_key: Option<&str>) -> Result<bool> {
        // With the runbook's key, then (when another run holds it) without.
        for key in [active_key, None] {
            let done = sqlx::query(
                "UPDATE runs SET status = $1, finished_at = NULL, error = NULL, active_key = $2
                 WHERE id = $3 AND status = $4 AND NOT cancel_requested",
            )
            .bind(RunStatus::Queued)
            .bind(key)
            .bind(run)
            .bind(RunStatus::Interrupted)
            .execute(&self.pool)
            .await;
            match done {
                Err(e) if key.is_some() && is_active_conflict(&e) => continue,
                done => return unless_active(done),
            }
        }
        Ok(false)
    }

    async fn recover(&self, expired_by: DateTime<Utc>, now: DateTime<Utc>) -> Result<Vec<RunRow>> {
        let mut tx = self.begin().await?;
        // Running runs whose latest attempt's lease expired. A run locked by
        // a fenced write in progress is skipped: its owner is alive.
        let rows = sqlx::query(
            "SELECT r.* FROM runs r JOIN attempts a ON a.run_id = r.id AND a.attempt = r.attempts
             WHERE r.status = $1 AND a.lease_until <= $2
             ORDER BY r.id FOR UPDATE OF r SKIP LOCKED",
        )
        .bind(RunStatus::Running)
        .bind(expired_by)
        .fetch_all(&mut *tx)
        .await?;
        let end = RunEnd {
            status: RunStatus::Interrupted,
            output: None,
            error: Some(crate::store::STOPPED.into()),
            at: now,
        };
        let runs: Vec<RunRow> = rows.iter().map(run_row).collect::<Result<_>>()?;
        for run in &runs {
            end_run_in(&mut tx, run.id, RunStatus::Running, &end).await?;
        }
        tx.commit().await?;
        Ok(runs)
    }

    async fn clock_offset(&self) -> Result<Option<chrono::TimeDelta>> {
        // Timed on a connection already in hand, so waiting for one does not
        // count; the server read its clock about halfway through the round
        // trip, and of three samples the shortest round trip is the surest.
        let mut conn = self.pool.acquire().await?;
        let mut best: Option<(chrono::TimeDelta, chrono::TimeDelta)> = None;
        for _ in 0..3 {
            let sent = Utc::now();
            let server: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
                .fetch_one(&mut *conn)
                .await?;
            let received = Utc::now();
            let round_trip = received - sent;
            let offset = server - (sent + round_trip / 2);
            if best.is_none_or(|(rt, _)| round_trip < rt) {
                best = Some((round_trip, offset));
            }
        }
        Ok(best.map(|(_, offset)| offset))
    }

    fn sole_writer(&self) -> bool {
        false
    }
}

/// Record a run's end, from `from`; the run leaves the one-active-run index,
/// and the trigger closes its open attempt. Returns whether it changed.
pub(super) async fn end_run_in(
    tx: &mut PgConnection,
    run: RunId,
    from: RunStatus,
    end: &RunEnd,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE runs SET status = $1, output = $2, error = $3, finished_at = $4, active_key = NULL
         WHERE id = $5 AND status = $6",
    )
    .bind(end.status)
    .bind(end.output.as_ref().map(cap_json))
    .bind(end.error.as_deref().map(capped))
    .bind(end.at)
    .bind(run)
    .bind(from)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A step of an attempt (the caller holds the fence).
async fn insert_step_in(tx: &mut sqlx::PgConnection, s: &StepRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO steps (attempt_id, position, name, status, started_at, finished_at, output, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(s.attempt_id)
    .bind(s.position as i32)
    .bind(&s.name)
    .bind(s.status)
    .bind(s.started_at)
    .bind(s.finished_at)
    .bind(s.output.as_ref().map(cap_json))
    .bind(s.error.as_deref().map(capped))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl PostgresStore {
    /// Start the run's next attempt; with `number`, only when that is the
    /// attempt's number.
    async fn start_numbered(
        &self,
        run: RunId,
        number: Option<u32>,
        owner: &str,
        at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        // As in SQLite: a queued run is anyone's, a running one (between
        // retries) only its latest owner's; the trigger makes the run
        // `running`. Two daemons starting it at once: the run's row lock
        // makes the second wait, then find the run no longer queued (and
        // the unique indexes would refuse a second attempt regardless).
        let started = sqlx::query(
            "INSERT INTO attempts (run_id, attempt, status, started_at, owner, lease_until)
             SELECT r.id, r.attempts + 1, $1, $2, $3, $4 FROM runs r
             WHERE r.id = $5 AND ($7::int IS NULL OR r.attempts + 1 = $7) AND (r.status = $6 OR (r.status = $1 AND EXISTS (
                 SELECT 1 FROM attempts a WHERE a.run_id = r.id AND a.attempt = r.attempts
                     AND a.owner = $3 AND a.status <> $1)))
             FOR UPDATE OF r
             RETURNING id, attempt",
        )
        .bind(RunStatus::Running)
        .bind(at)
        .bind(owner)
        .bind(lease_until)
        .bind(run)
        .bind(RunStatus::Queued)
        .bind(number.map(|n| n as i32))
        .fetch_optional(&self.pool)
        .await;
        let row = match started {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(e)
                if e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Some(Lease {
            run,
            attempt: row.try_get("id")?,
            number: row.try_get::<i32, _>("attempt")? as u32,
            owner: owner.to_string(),
        }))
    }
}
