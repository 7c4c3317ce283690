//! The SQLite store: one file, WAL, `synchronous=FULL`, one writing process.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::*;
use rows::{insert_logs_in, insert_step_in, json_col, required};
use rows::{run_row, time_col};

mod deliveries;
mod issues;
mod outbox;
mod rows;
mod schedule;
mod writer;

pub struct SqliteStore {
    /// Read-only connections, for queries.
    pool: SqlitePool,
    /// The one connection that writes, group-committing (`None` when read-only).
    writer: Option<writer::Writer>,
    /// Held for the life of the store when opened for writing.
    _lock: Option<DatabaseLock>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Whether an error is the one-active-run index refusing a write.
pub(super) fn is_active_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.message().contains("runs.active_key"))
}

impl SqliteStore {
    /// Open (creating if needed) and migrate the database file at `path`.
    ///
    /// Fails when another process holds it for writing, or when it cannot be
    /// opened or migrated.
    pub async fn open(path: &Path, access: Access) -> Result<Self> {
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: path.display().to_string(),
            cause: e.to_string(),
        };
        let lock = match access {
            Access::Exclusive => Some(DatabaseLock::acquire(path)?),
            Access::Read | Access::Shared => None,
        };
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| open_err(&e))?
            .filename(path)
            .create_if_missing(access == Access::Exclusive)
            .read_only(access == Access::Read)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Every write goes through the writer; the pool cannot write, so a
        // write that bypassed it would fail rather than wait on a lock.
        let writer = match access {
            Access::Read => None,
            Access::Exclusive | Access::Shared => {
                let mut conn = sqlx::ConnectOptions::connect(&opts)
                    .await
                    .map_err(|e| open_err(&e))?;
                if access == Access::Exclusive {
                    MIGRATOR
                        .run(&mut conn)
                        .await
                        .map_err(|e| StoreError::Migrate(e.to_string()))?;
                }
                Some(writer::Writer::start(conn))
            }
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await
            .map_err(|e| open_err(&e))?;
        Ok(SqliteStore {
            pool,
            writer,
            _lock: lock,
        })
    }

    /// A write: a savepoint in the writer's next batch, which takes the
    /// write lock at once, so two writers never deadlock upgrading a read
    /// lock. Nothing is kept unless the lease is committed.
    async fn write(&self) -> Result<writer::Lease<'_>> {
        self.writer()?.lease(true).await
    }

    /// A write of exactly one statement, committed when it succeeds: no
    /// savepoint (a failed statement undoes itself), two round trips fewer.
    async fn write_one(&self) -> Result<writer::Lease<'_>> {
        self.writer()?.lease(false).await
    }

    fn writer(&self) -> Result<&writer::Writer> {
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Database("the database is open read-only here".into()))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn save_version(&self, v: &VersionRow) -> Result<()> {
        let scripts =
            serde_json::to_string(&v.scripts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.write_one().await?;
        sqlx::query(
            "INSERT INTO runbook_versions (hash, runbook, path, yaml, scripts, created_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&v.hash)
        .bind(&v.runbook)
        .bind(&v.path)
        .bind(&v.yaml)
        .bind(scripts)
        .bind(ts(v.created_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn version(&self, hash: &str) -> Result<Option<VersionRow>> {
        let row = sqlx::query("SELECT * FROM runbook_versions WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let scripts: String = r.try_get("scripts")?;
            Ok(VersionRow {
                hash: r.try_get("hash")?,
                runbook: r.try_get("runbook")?,
                path: r.try_get("path")?,
                yaml: r.try_get("yaml")?,
                scripts: serde_json::from_str(&scripts)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                created_at: required(time_col(&r, "created_at")?, "created_at")?,
            })
        })
        .transpose()
    }

    async fn insert_run(&self, run: &NewRun) -> Result<RunId> {
        let mut tx = self.write_one().await?;
        let inserted = sqlx::query_scalar(
            "INSERT INTO runs (runbook, version_hash, trigger_kind, trigger_key, scheduled_at, status,
                               params, trigger_data, dry_run, created_at, active_key)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&run.runbook)
        .bind(&run.version_hash)
        .bind(&run.trigger_kind)
        .bind(&run.trigger_key)
        .bind(run.scheduled_at.map(ts))
        .bind(run.status.as_str())
        .bind(cap_json(&run.params))
        .bind(run.trigger_data.to_string())
        .bind(run.dry_run as i64)
        .bind(ts(run.created_at))
        .bind(&run.active_key)
        .fetch_one(&mut *tx)
        .await;
        match inserted {
            Ok(id) => {
                tx.commit().await?;
                Ok(id)
            }
            Err(e) if is_active_conflict(&e) => Err(StoreError::Conflict(format!(
                "runbook {} already has an active run and does not allow another (concurrency: forbid)",
                run.runbook
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn start_attempt(
        &self,
        run: RunId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<AttemptId> {
        // The trigger `attempt_starts_run` makes the run `running`.
        let mut tx = self.write_one().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO attempts (run_id, attempt, status, started_at) VALUES (?, ?, 'running', ?) RETURNING id",
        )
        .bind(run)
        .bind(attempt as i64)
        .bind(ts(at))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn insert_step(&self, s: &StepRow) -> Result<()> {
        self.insert_step_with_logs(s, &[]).await
    }

    async fn insert_step_with_logs(&self, s: &StepRow, lines: &[LogRow]) -> Result<()> {
        let mut tx = if lines.is_empty() {
            self.write_one().await?
        } else {
            self.write().await?
        };
        insert_step_in(&mut tx, s).await?;
        insert_logs_in(&mut tx, lines).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish(&self, lines: &[LogRow], run: RunId, end: &RunEnd) -> Result<()> {
        let mut tx = if lines.is_empty() {
            self.write_one().await?
        } else {
            self.write().await?
        };
        insert_logs_in(&mut tx, lines).await?;
        // The trigger `run_end_closes_attempt` closes the open attempt.
        end_run(&mut tx, run, end).await?;
        tx.commit().await
    }

    async fn insert_logs(&self, lines: &[LogRow]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        insert_logs_in(&mut tx, lines).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_attempt(
        &self,
        id: AttemptId,
        status: RunStatus,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.write_one().await?;
        sqlx::query("UPDATE attempts SET status = ?, error = ?, finished_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(error.map(cap_text))
            .bind(ts(at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn finish_run(&self, run: RunId, end: &RunEnd) -> Result<()> {
        let mut tx = self.write_one().await?;
        end_run(&mut tx, run, end).await?;
        tx.commit().await
    }

    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM runs WHERE 1 = 1");
        if let Some(rb) = &f.runbook {
            q.push(" AND runbook = ").push_bind(rb.clone());
        }
        if let Some(st) = f.status {
            q.push(" AND status = ").push_bind(st.as_str());
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

    async fn queued_runs(
        &self,
        runbook: Option<&str>,
        after: RunId,
        limit: u32,
    ) -> Result<Vec<RunRow>> {
        self.queued(runbook, after, limit).await
    }

    async fn claim(&self, run: RunId, active_key: &str) -> Result<bool> {
        self.claim_run(run, active_key).await
    }

    async fn requeue(&self, run: RunId, active_key: Option<&str>) -> Result<bool> {
        self.requeue_run(run, active_key).await
    }

    async fn recover_interrupted(&self, at: DateTime<Utc>) -> Result<Vec<RunRow>> {
        self.recover(at).await
    }

    async fn last_run(&self, runbook: &str) -> Result<LastRun> {
        let mut all = self.last_of_many(&[runbook.to_string()]).await?;
        Ok(all.remove(runbook).unwrap_or_default())
    }

    async fn last_runs(
        &self,
        runbooks: &[String],
    ) -> Result<std::collections::HashMap<String, LastRun>> {
        self.last_of_many(runbooks).await
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<u64> {
        self.prune_before(before).await
    }

    async fn open_issue(&self, issue: &IssueOpen) -> Result<(IssueRow, bool)> {
        self.issue_open(issue).await
    }

    async fn resolve_issue(
        &self,
        key: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        self.issue_resolve(key, note, at).await
    }

    async fn ack_issue(&self, key: &str, at: DateTime<Utc>) -> Result<bool> {
        self.issue_ack(key, at).await
    }

    async fn issue(&self, key: &str) -> Result<Option<IssueRow>> {
        self.issue_get(key).await
    }

    async fn list_issues(&self, filter: &IssueFilter) -> Result<Vec<IssueRow>> {
        self.issue_list(filter).await
    }

    async fn open_issue_counts(&self) -> Result<Vec<(String, i64)>> {
        self.issue_counts().await
    }

    async fn queue_email(&self, email: &NewEmail) -> Result<(i64, bool)> {
        self.email_queue(email).await
    }

    async fn take_due_emails(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<EmailRow>> {
        self.email_take(now, limit).await
    }

    async fn finish_email(&self, id: i64, attempt: &EmailAttempt, at: DateTime<Utc>) -> Result<()> {
        self.email_finish(id, attempt, at).await
    }

    async fn list_emails(&self, status: Option<&str>, limit: u32) -> Result<Vec<EmailRow>> {
        self.email_list(status, limit).await
    }

    async fn requeue_sending_emails(&self) -> Result<u64> {
        self.email_requeue().await
    }

    async fn accept_deliveries(&self, batch: &[Delivery]) -> Result<Vec<Accepted>> {
        self.accept(batch).await
    }

    async fn list_deliveries(
        &self,
        runbook: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>> {
        self.deliveries(runbook, before, limit).await
    }

    async fn queue_depth(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'queued'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn schedule_mark(
        &self,
        runbook: &str,
        trigger_key: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        self.mark_of(runbook, trigger_key).await
    }

    async fn init_mark(
        &self,
        runbook: &str,
        trigger_key: &str,
        at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>> {
        self.first_mark(runbook, trigger_key, at).await
    }

    async fn record_slots(&self, batch: &SlotBatch) -> Result<Vec<SlotResult>> {
        self.slots(batch).await
    }

    async fn run_detail(&self, id: RunId) -> Result<Option<RunDetail>> {
        self.detail_of(id).await
    }

    async fn state_get(
        &self,
        runbook: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query(
            "SELECT value FROM state WHERE runbook = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(runbook)
        .bind(key)
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| json_col(&r, "value").map(Option::unwrap_or_default))
            .transpose()
    }

    async fn state_set(
        &self,
        runbook: &str,
        key: &str,
        value: &serde_json::Value,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.write_one().await?;
        sqlx::query(
            "INSERT INTO state (runbook, key, value, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (runbook, key) DO UPDATE SET value = excluded.value,
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(runbook)
        .bind(key)
        .bind(value.to_string())
        .bind(expires_at.map(ts))
        .bind(ts(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    async fn state_delete(&self, runbook: &str, key: &str) -> Result<bool> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query("DELETE FROM state WHERE runbook = ? AND key = ?")
            .bind(runbook)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Record a run's end; the run leaves the one-active-run index.
async fn end_run(tx: &mut sqlx::SqliteConnection, run: RunId, end: &RunEnd) -> Result<()> {
    sqlx::query(
        "UPDATE runs SET status = ?, output = ?, error = ?, finished_at = ?, active_key = NULL WHERE id = ?",
    )
    .bind(end.status.as_str())
    .bind(end.output.as_ref().map(cap_json))
    .bind(end.error.as_deref().map(cap_text))
    .bind(ts(end.at))
    .bind(run)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
