//! SQLite: reading history (lists, one run's detail, each runbook's latest
//! run) and keeping it within retention.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use super::rows::{json_col, required, run_row, status_col, time_col};
use crate::store::*;

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM runs WHERE 1 = 1");
        if let Some(rb) = &f.runbook {
            q.push(" AND runbook = ").push_bind(rb.clone());
        }
        if let Some(st) = f.status {
            q.push(" AND status = ").push_bind(st);
        }
        if let Some(since) = f.since {
            q.push(" AND created_at >= ").push_bind(ts(since));
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
        let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let run = run_row(&row)?;
        let attempts = sqlx::query("SELECT * FROM attempts WHERE run_id = ? ORDER BY attempt")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(AttemptRow {
                    id: r.try_get("id")?,
                    attempt: r.try_get::<i64, _>("attempt")? as u32,
                    status: status_col(r, "status")?,
                    started_at: required(time_col(r, "started_at")?, "started_at")?,
                    finished_at: time_col(r, "finished_at")?,
                    error: r.try_get("error")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let steps = sqlx::query(
            "SELECT s.* FROM steps s JOIN attempts a ON a.id = s.attempt_id WHERE a.run_id = ? ORDER BY a.attempt, s.position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(StepRow {
                attempt_id: r.try_get("attempt_id")?,
                position: r.try_get::<i64, _>("position")? as u32,
                name: r.try_get("name")?,
                status: status_col(r, "status")?,
                started_at: required(time_col(r, "started_at")?, "started_at")?,
                finished_at: required(time_col(r, "finished_at")?, "finished_at")?,
                output: json_col(r, "output")?,
                error: r.try_get("error")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let logs = sqlx::query("SELECT * FROM logs WHERE run_id = ? ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(LogRow {
                    run_id: r.try_get("run_id")?,
                    attempt: r.try_get::<i64, _>("attempt")? as u32,
                    step: r.try_get("step")?,
                    at: required(time_col(r, "at")?, "at")?,
                    level: r.try_get("level")?,
                    message: r.try_get("message")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RunDetail {
            run,
            attempts,
            steps,
            logs,
        }))
    }

    async fn last_runs(&self, runbooks: &[String]) -> Result<HashMap<String, LastRun>> {
        let names =
            serde_json::to_string(runbooks).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // One row per runbook: a seek on `(runbook, id)` for its latest run,
        // and a walk back along the same index to its latest success (the
        // `+` keeps SQLite off the status index, which would visit every
        // succeeded run). Only the columns lists show are read.
        let rows = sqlx::query(
            "SELECT n.value AS name, r.id, r.status, r.created_at, r.started_at, r.finished_at, r.error,
                    (SELECT finished_at FROM runs s WHERE s.runbook = n.value AND +s.status = ?2 AND s.dry_run = 0
                     ORDER BY id DESC LIMIT 1) AS last_success
             FROM json_each(?1) n
             LEFT JOIN runs r ON r.id = (SELECT id FROM runs r2 WHERE r2.runbook = n.value ORDER BY id DESC LIMIT 1)",
        )
        .bind(&names)
        .bind(RunStatus::Succeeded)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
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
            out.insert(
                name,
                LastRun {
                    run,
                    last_success,
                    versions: Vec::new(),
                },
            );
        }
        Ok(out)
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut total = 0;
        // In batches, so a large prune never holds the write lock for long.
        loop {
            let mut tx = self.write_one().await?;
            let done = sqlx::query(
                "DELETE FROM runs WHERE id IN (
                     SELECT id FROM runs WHERE created_at < ? AND status NOT IN (?, ?) LIMIT 5000)",
            )
            .bind(ts(before))
            .bind(RunStatus::Queued)
            .bind(RunStatus::Running)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            total += done.rows_affected();
            if done.rows_affected() == 0 {
                return Ok(total);
            }
        }
    }

    async fn queue_depth(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = ?")
                .bind(RunStatus::Queued)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn lead_housekeeping(&self, _owner: &str, _until: DateTime<Utc>) -> Result<bool> {
        // One process writes the file: it leads.
        Ok(true)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn writable(&self) -> Result<()> {
        // While commits fail for another reason than a full disk (an I/O
        // error, a read-only remount), a tiny commit tells whether they work
        // again; its outcome updates the health like any commit's. A full
        // disk is judged by its free space instead: a tiny commit may fit
        // where a delivery does not.
        let failing = self.health.check().err();
        if failing
            .is_some_and(|why| !matches!(StoreError::from_database_text(why), StoreError::Full))
            && self.writer.is_some()
        {
            let _ = self.probe_write().await;
        }
        self.health.check().map_err(StoreError::from_database_text)
    }
}

/// One process writes a SQLite database: its versions are the only ones.
#[async_trait]
impl FleetStore for SqliteStore {
    async fn publish_versions(&self, _owner: &str, _loaded: &[(String, String)]) -> Result<()> {
        Ok(())
    }

    async fn version_skew(
        &self,
        _seen_within: std::time::Duration,
    ) -> Result<HashMap<String, Vec<LoadedVersion>>> {
        Ok(HashMap::new())
    }
}
