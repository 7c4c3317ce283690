//! PostgreSQL: reading history (lists, one run's detail, each runbook's
//! latest run) and keeping it within retention.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::PostgresStore;
use super::rows::{json_col, run_row};
use crate::store::*;

fn attempt_row(r: &PgRow) -> Result<AttemptRow> {
    Ok(AttemptRow {
        id: r.try_get("id")?,
        attempt: r.try_get::<i32, _>("attempt")? as u32,
        status: r.try_get("status")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        error: r.try_get("error")?,
    })
}

fn step_row(r: &PgRow) -> Result<StepRow> {
    Ok(StepRow {
        attempt_id: r.try_get("attempt_id")?,
        position: r.try_get::<i32, _>("position")? as u32,
        name: r.try_get("name")?,
        status: r.try_get("status")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        output: json_col(r, "output")?,
        error: r.try_get("error")?,
    })
}

fn log_row(r: &PgRow) -> Result<LogRow> {
    Ok(LogRow {
        run_id: r.try_get("run_id")?,
        attempt: r.try_get::<i32, _>("attempt")? as u32,
        step: r.try_get("step")?,
        at: r.try_get("at")?,
        level: r.try_get("level")?,
        message: r.try_get("message")?,
    })
}

/// A row of [`HistoryStore::last_runs`]: the runbook's name and what lists show.
fn last_run_row(row: &PgRow) -> Result<(String, LastRun)> {
    let id: Option<RunId> = row.try_get("id")?;
    let run = match id {
        Some(id) => Some(RunSummary {
            id,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            error: row.try_get("error")?,
        }),
        None => None,
    };
    let last_success = row.try_get("last_success")?;
    Ok((
        row.try_get("name")?,
        LastRun {
            run,
            last_success,
            versions: Vec::new(),
        },
    ))
}

#[async_trait]
impl HistoryStore for PostgresStore {
    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT * FROM runs WHERE 1 = 1");
        if let Some(rb) = &f.runbook {
            q.push(" AND runbook = ").push_bind(rb.clone());
        }
        if let Some(st) = f.status {
            q.push(" AND status = ").push_bind(st);
        }
        if let Some(since) = f.since {
            q.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(before) = f.before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(f.limit.max(1) as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(run_row).collect()
    }

    async fn run_detail(&self, id: RunId) -> Result<Option<RunDetail>> {
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let run = run_row(&row)?;
        let attempts = sqlx::query("SELECT * FROM attempts WHERE run_id = $1 ORDER BY attempt")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(attempt_row)
            .collect::<Result<Vec<_>>>()?;
        let steps = sqlx::query(
            "SELECT s.* FROM steps s JOIN attempts a ON a.id = s.attempt_id WHERE a.run_id = $1
             ORDER BY a.attempt, s.position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(step_row)
        .collect::<Result<Vec<_>>>()?;
        let logs = sqlx::query("SELECT * FROM logs WHERE run_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(log_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RunDetail {
            run,
            attempts,
            steps,
            logs,
        }))
    }

    async fn last_runs(&self, runbooks: &[String]) -> Result<HashMap<String, LastRun>> {
        // One row per runbook: a seek on `(runbook, id)` for its latest run,
        // and a walk back along the same index to its latest success (the
        // `|| ''` keeps the planner off the status index, which would visit
        // every succeeded run). Only the columns lists show are read.
        let rows = sqlx::query(
            "SELECT n.name, r.id, r.status, r.created_at, r.started_at, r.finished_at, r.error,
                    (SELECT s.finished_at FROM runs s
                     WHERE s.runbook = n.name AND (s.status || '') = $2::text AND NOT s.dry_run
                     ORDER BY s.id DESC LIMIT 1) AS last_success
             FROM unnest($1::text[]) AS n(name)
             LEFT JOIN LATERAL (SELECT * FROM runs r2 WHERE r2.runbook = n.name ORDER BY r2.id DESC LIMIT 1) r
                 ON TRUE",
        )
        .bind(runbooks)
        .bind(RunStatus::Succeeded)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in &rows {
            let (name, last) = last_run_row(row)?;
            out.insert(name, last);
        }
        Ok(out)
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut total = 0;
        // In batches, so a large prune never holds many rows locked for
        // long. The status is checked again on the row deleted, so a run
        // another daemon put back in the queue meanwhile is kept.
        loop {
            let done = sqlx::query(
                "DELETE FROM runs WHERE id IN (
                     SELECT id FROM runs WHERE created_at < $1 AND status NOT IN ($2, $3) LIMIT 5000)
                 AND status NOT IN ($2, $3)",
            )
            .bind(before)
            .bind(RunStatus::Queued)
            .bind(RunStatus::Running)
            .execute(&self.pool)
            .await?;
            total += done.rows_affected();
            if done.rows_affected() == 0 {
                return Ok(total);
            }
        }
    }

    async fn queue_depth(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = $1")
                .bind(RunStatus::Queued)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn lead_housekeeping(&self, owner: &str, until: DateTime<Utc>) -> Result<bool> {
        // Taken, or renewed by its holder, or taken over once it expired (by
        // the database's clock); otherwise nothing comes back.
        let led: Option<String> = sqlx::query_scalar(
            "INSERT INTO leaders (task, owner, until) VALUES ('housekeeping', $1, $2)
             ON CONFLICT (task) DO UPDATE SET owner = excluded.owner, until = excluded.until
                 WHERE leaders.owner = excluded.owner OR leaders.until < now()
             RETURNING owner",
        )
        .bind(owner)
        .bind(until)
        .fetch_optional(&self.pool)
        .await?;
        Ok(led.is_some())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The server manages its own disk: a write it cannot make fails that
    /// write, and the server answering is what this daemon can know.
    async fn writable(&self) -> Result<()> {
        self.ping().await
    }
}
