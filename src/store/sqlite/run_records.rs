//! SQLite: the statements that record many runs' attempt starts and ends at
//! once, for the recorder (`recorder.rs`). Each row carries its own fence.

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::recorder::{EndJob, StartJob};
use super::rows::{insert_logs_in, keep_prepared};
use crate::store::*;

/// The highest attempt id the database has used.
pub(super) async fn last_attempt_id(tx: &mut SqliteConnection) -> Result<AttemptId> {
    Ok(sqlx::query_scalar(
        "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'attempts'), 0),
                    COALESCE((SELECT max(id) FROM attempts), 0))",
    )
    .fetch_one(&mut *tx)
    .await?)
}

/// Start the next attempt of each job's run that is the job's to start (a
/// queued run, or a run of the same owner waiting to retry) under the job's
/// id; returns the number of each attempt started, by the attempt's id.
pub(super) async fn start_many(
    tx: &mut SqliteConnection,
    jobs: &[StartJob],
) -> Result<HashMap<AttemptId, u32>> {
    let mut q = QueryBuilder::<Sqlite>::new("WITH v (id, run, number, at, until, owner) AS (");
    q.push_values(jobs, |mut b, j| {
        b.push_bind(j.id)
            .push_bind(j.run)
            .push_bind(j.number.map(i64::from))
            .push_bind(&j.at)
            .push_bind(&j.until)
            .push_bind(&j.owner);
    });
    // A refused row (a second running attempt, a taken id) is left out,
    // not the batch.
    q.push(
        ") INSERT OR IGNORE INTO attempts (id, run_id, attempt, status, started_at, owner, lease_until)
           SELECT v.id, r.id, r.attempts + 1, ",
    )
    .push_bind(RunStatus::Running)
    .push(
        ", v.at, v.owner, v.until FROM v JOIN runs r ON r.id = v.run
           WHERE (v.number IS NULL OR v.number = r.attempts + 1) AND (r.status = ",
    )
    .push_bind(RunStatus::Queued)
    .push(" OR (r.status = ")
    .push_bind(RunStatus::Running)
    .push(
        " AND EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = r.id AND a.attempt = r.attempts
              AND a.owner = v.owner AND a.status <> ",
    )
    .push_bind(RunStatus::Running)
    .push("))) RETURNING id, attempt");
    let rows = q
        .build()
        .persistent(keep_prepared(jobs.len()))
        .fetch_all(&mut *tx)
        .await?;
    let mut started = HashMap::with_capacity(rows.len());
    for row in rows {
        let number: i64 = row.try_get(1)?;
        started.insert(row.try_get(0)?, number as u32);
    }
    Ok(started)
}

/// Record each job's last step, its end and its log lines, for the runs
/// whose lease still holds; returns those runs.
pub(super) async fn end_many(tx: &mut SqliteConnection, jobs: &[EndJob]) -> Result<HashSet<RunId>> {
    insert_steps(tx, jobs).await?;
    let mut q =
        QueryBuilder::<Sqlite>::new("WITH v (id, attempt, owner, status, output, error, at) AS (");
    q.push_values(jobs, |mut b, j| {
        b.push_bind(j.lease.run)
            .push_bind(j.lease.attempt)
            .push_bind(&j.lease.owner)
            .push_bind(j.end.status)
            .push_bind(j.end.output.as_ref().map(cap_json))
            .push_bind(j.end.error.as_deref().map(cap_text))
            .push_bind(ts(j.end.at));
    });
    // The trigger `run_end_closes_attempt` closes each open attempt.
    q.push(
        ") UPDATE runs SET status = v.status, output = v.output, error = v.error,
               finished_at = v.at, active_key = NULL
           FROM v WHERE runs.id = v.id AND runs.status = ",
    )
    .push_bind(RunStatus::Running)
    .push(
        " AND EXISTS (SELECT 1 FROM attempts a WHERE a.id = v.attempt AND a.owner = v.owner
              AND a.attempt = runs.attempts) RETURNING id",
    );
    let ended: HashSet<RunId> = q
        .build()
        .persistent(keep_prepared(jobs.len()))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    let lines: Vec<LogRow> = jobs
        .iter()
        .filter(|j| ended.contains(&j.lease.run))
        .flat_map(|j| j.lines.iter().cloned())
        .collect();
    insert_logs_in(tx, &lines).await?;
    Ok(ended)
}

/// The last steps not yet written, of the runs whose lease still holds
/// (before their end: the fence holds only while a run is running).
async fn insert_steps(tx: &mut SqliteConnection, jobs: &[EndJob]) -> Result<()> {
    let steps: Vec<(&Lease, &StepRow)> = jobs
        .iter()
        .filter_map(|j| Some((&j.lease, j.step.as_ref()?)))
        .collect();
    if steps.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "WITH v (held, owner, attempt_id, position, name, status, started_at, finished_at, output, error) AS (",
    );
    q.push_values(&steps, |mut b, (lease, s)| {
        b.push_bind(lease.attempt)
            .push_bind(&lease.owner)
            .push_bind(s.attempt_id)
            .push_bind(s.position as i64)
            .push_bind(&s.name)
            .push_bind(s.status)
            .push_bind(ts(s.started_at))
            .push_bind(ts(s.finished_at))
            .push_bind(s.output.as_ref().map(cap_json))
            .push_bind(s.error.as_deref().map(cap_text));
    });
    q.push(
        ") INSERT INTO steps (attempt_id, position, name, status, started_at, finished_at, output, error)
           SELECT v.attempt_id, v.position, v.name, v.status, v.started_at, v.finished_at, v.output, v.error
           FROM v JOIN attempts a ON a.id = v.held AND a.owner = v.owner
           JOIN runs r ON r.id = a.run_id AND r.attempts = a.attempt AND r.status = ",
    )
    .push_bind(RunStatus::Running);
    q.build()
        .persistent(keep_prepared(steps.len()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
