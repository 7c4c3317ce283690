//! The SQLite store: one file, WAL, `synchronous=FULL`, one writing process
//! (the file lock), every write through one group-committing connection.
//! Each role of the store contract is implemented in its own file.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::*;
use rows::{json_col, required, run_row, time_col};

mod accept_set;
mod attempts;
mod deliveries;
mod health;
mod history;
mod issues;
mod outbox;
mod recorder;
mod rows;
mod run_records;
mod runs;
mod schedule;
mod writer;

pub struct SqliteStore {
    /// Read-only connections, for queries.
    pool: SqlitePool,
    /// The one connection that writes, group-committing (`None` when read-only).
    writer: Option<writer::Writer>,
    /// Writes runs' starts and ends in batches, through the writer.
    recorder: Option<recorder::Recorder>,
    /// Whether commits succeed now.
    health: Arc<health::WriteHealth>,
    /// Held for the life of the store when opened for writing.
    _lock: Option<DatabaseLock>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Whether an error is the one-active-run index refusing a write.
pub(super) fn is_active_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.message().contains("runs.active_key"))
}

/// Refuse a damaged file before anything runs on it: a run whose records
/// cannot be written would still do its work (`PRAGMA quick_check` reads
/// every page once, so it takes a moment on a large file).
async fn check_integrity(conn: &mut sqlx::SqliteConnection, path: &Path) -> Result<()> {
    let damaged = |cause: String| StoreError::Open {
        path: path.display().to_string(),
        cause: format!(
            "it is damaged ({cause}); restore it from a backup, or move it aside to start with an empty database"
        ),
    };
    let found: Vec<String> = match sqlx::query_scalar("PRAGMA quick_check(5)")
        .fetch_all(&mut *conn)
        .await
    {
        Ok(found) => found,
        // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26) mean damage; anything
        // else (a full disk, an I/O error) is reported as what it is.
        Err(e)
            if e.as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "11" || c == "26") =>
        {
            return Err(damaged(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    match found.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        problems => Err(damaged(problems.join("; "))),
    }
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
        // One name per file, for the lock and for SQLite's journal alike.
        let file = super::lock::identity(path)?;
        let health = Arc::new(health::WriteHealth::new(&file));
        let lock = match access {
            Access::Exclusive => Some(DatabaseLock::acquire(&file, path)?),
            Access::Read | Access::Shared => None,
        };
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| open_err(&e))?
            .filename(&file)
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
                    check_integrity(&mut conn, path).await?;
                    MIGRATOR
                        .run(&mut conn)
                        .await
                        .map_err(|e| StoreError::Migrate(e.to_string()))?;
                }
                Some(writer::Writer::start(conn, health.clone()))
            }
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await
            .map_err(|e| open_err(&e))?;
        // Runs are recorded only by the process that holds the database.
        let recorder = match &writer {
            Some(w) if access == Access::Exclusive => {
                Some(recorder::Recorder::start(w.handle()).await?)
            }
            _ => None,
        };
        Ok(SqliteStore {
            pool,
            writer,
            recorder,
            health,
            _lock: lock,
        })
    }

    /// The read-only connections, for copying a history out
    /// ([`crate::store::copy`]).
    pub(in crate::store) fn reader(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write that changes nothing but still reaches the disk: the
    /// database header's user version, set to what it is (page 1 is
    /// written, so the commit needs the disk).
    async fn probe_write(&self) -> Result<()> {
        let mut tx = self.write().await?;
        let v: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {v}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await
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

    fn recorder(&self) -> Result<&recorder::Recorder> {
        self.recorder.as_ref().ok_or_else(|| {
            StoreError::Database(
                "runs are recorded only by the process that holds the database".into(),
            )
        })
    }

    fn writer(&self) -> Result<&writer::Writer> {
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Database("the database is open read-only here".into()))
    }
}

#[async_trait]
impl VersionStore for SqliteStore {
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
        row.as_ref().map(version_row).transpose()
    }

    async fn latest_version_from(&self, path: &str) -> Result<Option<VersionRow>> {
        // Times are stored in one fixed-width format: text order is time order.
        let row = sqlx::query(
            "SELECT * FROM runbook_versions WHERE path = ? ORDER BY created_at DESC LIMIT 1",
        )
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }
}

fn version_row(r: &sqlx::sqlite::SqliteRow) -> Result<VersionRow> {
    let scripts: String = r.try_get("scripts")?;
    Ok(VersionRow {
        hash: r.try_get("hash")?,
        runbook: r.try_get("runbook")?,
        path: r.try_get("path")?,
        yaml: r.try_get("yaml")?,
        scripts: serde_json::from_str(&scripts).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: required(time_col(r, "created_at")?, "created_at")?,
    })
}

#[async_trait]
impl StateStore for SqliteStore {
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
        fence: Option<&Lease>,
        runbook: &str,
        key: &str,
        value: &serde_json::Value,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        attempts::fence_opt(&mut tx, fence).await?;
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

    async fn state_delete(&self, fence: Option<&Lease>, runbook: &str, key: &str) -> Result<bool> {
        let mut tx = self.write().await?;
        attempts::fence_opt(&mut tx, fence).await?;
        let done = sqlx::query("DELETE FROM state WHERE runbook = ? AND key = ?")
            .bind(runbook)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
