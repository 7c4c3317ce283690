//! The database: run history, runbook versions and script state, behind the
//! store contract ([`Store`], the sum of the role traits in `contract.rs`).
//! SQLite serves one daemon; PostgreSQL serves several sharing the work.
//! Guarantees live in constraints (see
//! `migrations/`) and in single statements, not in code that checks and then
//! writes. [`open`] is the one place a database URL is interpreted.

mod contract;
pub mod copy;
mod email;
mod kinds;
mod lock;
mod postgres;
mod rows;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use contract::*;
pub use email::*;
pub use kinds::*;
pub use lock::DatabaseLock;
pub use postgres::PostgresStore;
pub use rows::*;
pub use sqlite::SqliteStore;

/// Step outputs and run outputs larger than this are replaced by a preview.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// A log line or an error longer than this is cut, with a marker.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the database: `holder` is "another runbookd
    /// (pid N)" or "another process".
    #[error(
        "the database {database} is in use by {holder}; stop it, or point this command at another database with --database"
    )]
    Busy { database: String, holder: String },
    #[error("the database {path} cannot be opened: {cause}")]
    Open { path: String, cause: String },
    /// A command that only reads found no database: nothing was recorded.
    #[error(
        "the database {0} does not exist: nothing has been recorded yet (`runbookd serve` or `runbookd run` creates it)"
    )]
    Missing(String),
    #[error("the database schema could not be updated: {0}")]
    Migrate(String),
    #[error("the disk holding the database is full; free space and retry")]
    Full,
    /// A constraint refused the write (e.g. a second active run under `forbid`).
    #[error("{0}")]
    Conflict(String),
    /// The attempt's lease is no longer this owner's (it expired and the run
    /// was taken back, or the run ended): the write changed nothing.
    #[error("attempt {attempt} of run {run} is no longer held by {owner}; the write was refused")]
    Fenced {
        run: RunId,
        attempt: u32,
        owner: String,
    },
    /// The database aborted the transaction for a deadlock or a
    /// serialization failure with another process's: nothing was written,
    /// and the same transaction may be tried again.
    #[error("database error (contention with another daemon): {0}")]
    Contention(String),
    /// The database server cannot be reached (connection refused or
    /// dropped, no free connection in time): nothing was written.
    #[error("the database cannot be reached: {0}")]
    Unreachable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // 40001 serialization_failure, 40P01 deadlock_detected (PostgreSQL).
        let code = e.as_database_error().and_then(|d| d.code());
        if matches!(code.as_deref(), Some("40001" | "40P01")) {
            return StoreError::Contention(e.to_string());
        }
        // Class 08 (connection exception), 57P01-57P03 (the server is
        // shutting down or starting), no connection at all, or one cut in
        // the middle of the protocol (a proxy with no server behind it).
        let server_gone = code
            .as_deref()
            .is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"));
        if server_gone
            || matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
            )
        {
            return StoreError::Unreachable(e.to_string());
        }
        StoreError::from_database_text(e.to_string())
    }
}

impl StoreError {
    /// The error a database error's text describes.
    pub(crate) fn from_database_text(text: String) -> Self {
        if text.contains("database or disk is full") {
            StoreError::Full
        } else {
            StoreError::Database(text)
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// How a command uses the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Writes history: takes the database lock; a second such process is refused.
    Exclusive,
    /// Reads history only: no lock, no schema changes.
    Read,
    /// Small writes beside a running daemon (a person acknowledging an
    /// issue): no lock, no schema changes; SQLite serialises the writes.
    Shared,
}

/// Open the store a URL names: `sqlite://path` or a plain file path, or
/// `postgres://USER@HOST:PORT/DB` (`postgresql://`). This is the one place a
/// database URL is interpreted.
///
/// Fails when the URL names an unsupported backend, when a command that does
/// not write ([`Access::Read`], [`Access::Shared`]) finds no database, when
/// the file cannot be opened or migrated, or (with [`Access::Exclusive`])
/// when another process holds it.
pub async fn open(url: &str, access: Access) -> Result<Arc<dyn Store>> {
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("postgres" | "postgresql") => Ok(Arc::new(PostgresStore::open(url, access).await?)),
        Some("sqlite") | None => {
            let path = sqlite_path(url);
            if access != Access::Exclusive && !path.exists() {
                return Err(StoreError::Missing(url.into()));
            }
            Ok(Arc::new(SqliteStore::open(&path, access).await?))
        }
        Some(other) => Err(StoreError::Open {
            path: shown_url(url),
            cause: format!(
                "\"{other}://\" is not a database this build knows; use sqlite://FILE or postgres://USER@HOST/DB"
            ),
        }),
    }
}

/// The creation time before which runs are pruned when `keep` is how long
/// they are kept; `None` when `keep` reaches before the calendar.
pub fn prune_cutoff(now: DateTime<Utc>, keep: std::time::Duration) -> Option<DateTime<Utc>> {
    now.checked_sub_signed(chrono::TimeDelta::from_std(keep).ok()?)
}

/// A database URL as it may be shown (banner, messages): its password, if
/// any, replaced by `***`.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        // The password, and `?password=` (another way to give it), masked.
        Ok(u) => crate::secrets::shown_url(&u),
        Err(_) => url.to_string(),
    }
}

/// The file a SQLite URL names: `sqlite://runbookd.db`, `sqlite:///abs.db`, `x.db`.
pub fn sqlite_path(url: &str) -> std::path::PathBuf {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest).into()
}

/// Cut text to [`MAX_TEXT_BYTES`] on a character boundary, saying so.
pub fn cap_text(s: &str) -> String {
    if s.len() <= MAX_TEXT_BYTES {
        return s.to_string();
    }
    let mut end = MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [truncated: {} bytes in all]", &s[..end], s.len())
}

/// Why a run taken back by recovery is interrupted: its owner stopped (a
/// crash, a kill, a lease lost), as opposed to a shutdown that interrupted
/// it on purpose.
pub const STOPPED: &str = "the process running it stopped before it finished";

/// Serialise a JSON value, replaced by a marked preview when over [`MAX_OUTPUT_BYTES`].
pub fn cap_json(v: &serde_json::Value) -> String {
    let text = v.to_string();
    if text.len() <= MAX_OUTPUT_BYTES {
        return text;
    }
    let mut end = 1024;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    serde_json::json!({ "truncated": true, "bytes": text.len(), "preview": &text[..end] })
        .to_string()
}

/// Times are stored as UTC text in one fixed format, so they sort as text.
pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("bad time \"{s}\"")))
}

/// The scripts of a version as stored: file → source.
pub type ScriptTexts = BTreeMap<String, String>;

/// Serialized by the API and read back by the CLI that follows a run through it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunRow,
    pub attempts: Vec<AttemptRow>,
    pub steps: Vec<StepRow>,
    pub logs: Vec<LogRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_mark_what_they_cut() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = cap_text(&long);
        assert!(cut.ends_with(&format!("[truncated: {} bytes in all]", long.len())));
        let big = serde_json::Value::String("x".repeat(MAX_OUTPUT_BYTES + 10));
        let capped: serde_json::Value = serde_json::from_str(&cap_json(&big)).unwrap();
        assert_eq!(capped["truncated"], true);
        assert_eq!(
            sqlite_path("sqlite://runbookd.db"),
            std::path::PathBuf::from("runbookd.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/r.db?mode=rwc"),
            std::path::PathBuf::from("/var/lib/r.db")
        );
    }

    #[test]
    fn a_database_password_is_never_shown() {
        assert_eq!(
            shown_url("postgres://rb:s3cret@db:5432/rb?sslmode=require"),
            "postgres://rb:***@db:5432/rb?sslmode=require"
        );
        assert_eq!(
            shown_url("postgres://rb@db/rb?password=s3cret&sslmode=require"),
            "postgres://rb@db/rb?password=***&sslmode=require"
        );
        assert_eq!(shown_url("sqlite://runbookd.db"), "sqlite://runbookd.db");
    }
}
