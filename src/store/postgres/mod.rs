//! The PostgreSQL store: one database shared by every daemon of a
//! deployment. Each role of the store contract is implemented in its own
//! file, as for SQLite, and every guarantee lives in a constraint or a single
//! statement (`migrations/postgres`): a slot, a delivery, a claim, an email
//! is taken once whichever daemon asks, because the database refuses the
//! second, not because a daemon checked first.
//!
//! Writes that a running attempt makes are fenced: their transaction first
//! locks the run's row while the attempt's owner still holds it
//! ([`attempts::fence_in`]), so recovery by another daemon (which updates
//! that row) and a late write of the old owner are serialised, and the late
//! write changes nothing.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::*;
use rows::{json_col, run_row};

mod attempts;
mod deliveries;
mod fleet;
mod history;
mod issues;
mod outbox;
mod rows;
mod runs;
mod schedule;

pub struct PostgresStore {
    pool: PgPool,
}

/// Whether an error is the one-active-run index refusing a write.
pub(super) fn is_active_conflict(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.constraint() == Some("runs_one_active"))
}

impl PostgresStore {
    /// Connect to the database `url` names and bring its schema up to date.
    /// Several daemons may start at once: the migrations run under an
    /// advisory lock, so each is applied once and every daemon starts.
    ///
    /// Fails when the server cannot be reached, refuses the login, or the
    /// schema cannot be migrated.
    pub async fn open(url: &str, access: Access) -> Result<Self> {
        let shown = shown_url(url);
        let open_err = |e: &dyn std::fmt::Display| StoreError::Open {
            path: shown.clone(),
            cause: masked(&e.to_string(), url),
        };
        let opts: PgConnectOptions = url.parse().map_err(|e| open_err(&e))?;
        // A daemon stopped inside a transaction (SIGSTOP, a frozen VM) must
        // not hold its row locks for ever: the server ends its session.
        let opts = opts
            .application_name("runbookd")
            .options([("idle_in_transaction_session_timeout", "15s")]);
        // One connection first: its error names the cause (refused, no such
        // database, authentication), where the pool would only time out.
        sqlx::Connection::close(
            sqlx::ConnectOptions::connect(&opts)
                .await
                .map_err(|e| open_err(&e))?,
        )
        .await
        .map_err(|e| open_err(&e))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| open_err(&e))?;
        if access == Access::Exclusive {
            // During a rolling upgrade a newer daemon may have applied
            // migrations this one does not know: they only add, so it starts.
            let mut migrator = sqlx::migrate!("migrations/postgres");
            migrator.set_ignore_missing(true);
            migrator
                .run(&pool)
                .await
                .map_err(|e| StoreError::Migrate(masked(&e.to_string(), url)))?;
        } else {
            let migrated: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'runs')",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| open_err(&e))?;
            if !migrated {
                return Err(StoreError::Missing(shown));
            }
        }
        Ok(PostgresStore { pool })
    }

    /// The connections, for copying a history in ([`crate::store::copy`]).
    pub(in crate::store) fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

/// Run a transaction, and run it again (a few times, backing off) when
/// PostgreSQL aborted it for contention with another daemon's: a deadlock
/// between two batches, say. An aborted transaction wrote nothing.
pub(super) async fn again<T, F, Fut>(mut transaction: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut wait = Duration::from_millis(5);
    for _ in 0..5 {
        match transaction().await {
            Err(StoreError::Contention(e)) => {
                tracing::debug!(error = %e, "a transaction met another daemon's; trying it again");
                tokio::time::sleep(wait).await;
                wait *= 3;
            }
            done => return done,
        }
    }
    transaction().await
}

/// Text that may hold the URL, with its password masked.
fn masked(text: &str, url: &str) -> String {
    let shown = shown_url(url);
    if shown == url {
        text.to_string()
    } else {
        text.replace(url, &shown)
    }
}

#[async_trait]
impl VersionStore for PostgresStore {
    async fn save_version(&self, v: &VersionRow) -> Result<()> {
        let scripts =
            serde_json::to_string(&v.scripts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO runbook_versions (hash, runbook, path, yaml, scripts, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&v.hash)
        .bind(&v.runbook)
        .bind(&v.path)
        .bind(&v.yaml)
        .bind(scripts)
        .bind(v.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn version(&self, hash: &str) -> Result<Option<VersionRow>> {
        let row = sqlx::query("SELECT * FROM runbook_versions WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(version_row).transpose()
    }

    async fn latest_version_from(&self, path: &str) -> Result<Option<VersionRow>> {
        let row = sqlx::query(
            "SELECT * FROM runbook_versions WHERE path = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }
}

fn version_row(r: &sqlx::postgres::PgRow) -> Result<VersionRow> {
    let scripts: String = r.try_get("scripts")?;
    Ok(VersionRow {
        hash: r.try_get("hash")?,
        runbook: r.try_get("runbook")?,
        path: r.try_get("path")?,
        yaml: r.try_get("yaml")?,
        scripts: serde_json::from_str(&scripts).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl StateStore for PostgresStore {
    async fn state_get(
        &self,
        runbook: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query(
            "SELECT value FROM state WHERE runbook = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(runbook)
        .bind(key)
        .bind(now)
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
        let mut tx = self.begin().await?;
        attempts::fence_opt(&mut tx, fence).await?;
        sqlx::query(
            "INSERT INTO state (runbook, key, value, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (runbook, key) DO UPDATE SET value = excluded.value,
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(runbook)
        .bind(key)
        .bind(value.to_string())
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(tx.commit().await?)
    }

    async fn state_delete(&self, fence: Option<&Lease>, runbook: &str, key: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        attempts::fence_opt(&mut tx, fence).await?;
        let done = sqlx::query("DELETE FROM state WHERE runbook = $1 AND key = $2")
            .bind(runbook)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
