//! The database: run history, runbook versions and script state, behind the
//! [`Store`] interface. SQLite is the first implementation; guarantees live in
//! constraints (see `migrations/`), not in code that checks and then writes.

mod lock;
mod rows;
mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use lock::DatabaseLock;
pub use rows::*;
pub use sqlite::SqliteStore;

/// Step outputs and run outputs larger than this are replaced by a preview.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// A log line or an error longer than this is cut, with a marker.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the database.
    #[error("{0}")]
    Busy(String),
    #[error("the database {path} cannot be opened: {cause}")]
    Open { path: String, cause: String },
    #[error("the database schema could not be updated: {0}")]
    Migrate(String),
    #[error("the disk holding the database is full; free space and retry")]
    Full,
    /// A constraint refused the write (e.g. a second active run under `forbid`).
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
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

#[async_trait]
pub trait Store: Send + Sync {
    /// Keep the text of a runbook version (once per hash).
    async fn save_version(&self, v: &VersionRow) -> Result<()>;
    async fn version(&self, hash: &str) -> Result<Option<VersionRow>>;

    /// Record a trigger firing; returns the run id.
    async fn insert_run(&self, run: &NewRun) -> Result<RunId>;
    /// Start attempt `attempt` of a run; the run becomes `running` (in the
    /// same statement).
    async fn start_attempt(&self, run: RunId, attempt: u32, at: DateTime<Utc>)
    -> Result<AttemptId>;
    async fn insert_step(&self, step: &StepRow) -> Result<()>;
    /// A step and the log lines written during it, in one transaction.
    async fn insert_step_with_logs(&self, step: &StepRow, lines: &[LogRow]) -> Result<()>;
    /// The end of a run in one transaction: its last log lines and the
    /// run's end, which also closes the attempt still open with the run's
    /// status and error.
    async fn finish(&self, lines: &[LogRow], run: RunId, end: &RunEnd) -> Result<()>;
    async fn insert_logs(&self, lines: &[LogRow]) -> Result<()>;
    async fn finish_attempt(
        &self,
        id: AttemptId,
        status: RunStatus,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()>;
    async fn finish_run(&self, run: RunId, end: &RunEnd) -> Result<()>;

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>>;
    /// Runs waiting to run with an id above `after`, oldest first, at most
    /// `limit`; of one runbook, or of all.
    async fn queued_runs(
        &self,
        runbook: Option<&str>,
        after: RunId,
        limit: u32,
    ) -> Result<Vec<RunRow>>;
    /// Take a queued run's runbook slot (`active_key`); false while another run holds it.
    async fn claim(&self, run: RunId, active_key: &str) -> Result<bool>;
    /// Put a run back in the queue (an interrupted run to retry).
    async fn requeue(&self, run: RunId, active_key: Option<&str>) -> Result<bool>;
    /// Mark every run left `running` (by a process that died) as
    /// `interrupted`; returns them as they were.
    async fn recover_interrupted(&self, at: DateTime<Utc>) -> Result<Vec<RunRow>>;
    /// The latest run of a runbook, and when it last succeeded.
    async fn last_run(&self, runbook: &str) -> Result<LastRun>;
    /// `last_run` for many runbooks at once (one query, index seeks per runbook).
    async fn last_runs(
        &self,
        runbooks: &[String],
    ) -> Result<std::collections::HashMap<String, LastRun>>;
    /// Delete finished runs (with their attempts, steps and logs) created before `before`.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Record webhook deliveries, and their runs, in one transaction (group commit).
    async fn accept_deliveries(&self, batch: &[Delivery]) -> Result<Vec<Accepted>>;
    /// Deliveries, newest first.
    async fn list_deliveries(
        &self,
        runbook: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>>;
    /// How many runs are queued.
    async fn queue_depth(&self) -> Result<i64>;
    /// A cheap query that proves the database answers.
    async fn ping(&self) -> Result<()>;

    /// Open (or bump, or reopen) an issue; returns it and whether it is new.
    async fn open_issue(&self, issue: &IssueOpen) -> Result<(IssueRow, bool)>;
    /// Resolve an issue; false when it was not open or acknowledged.
    async fn resolve_issue(&self, key: &str, note: Option<&str>, at: DateTime<Utc>)
    -> Result<bool>;
    /// Acknowledge an open issue; false when it was not open.
    async fn ack_issue(&self, key: &str, at: DateTime<Utc>) -> Result<bool>;
    async fn issue(&self, key: &str) -> Result<Option<IssueRow>>;
    async fn list_issues(&self, filter: &IssueFilter) -> Result<Vec<IssueRow>>;
    /// Open (and acknowledged) issues by severity.
    async fn open_issue_counts(&self) -> Result<Vec<(String, i64)>>;

    /// Queue an email; returns its id (the existing one when the key was used).
    async fn queue_email(&self, email: &NewEmail) -> Result<(i64, bool)>;
    /// Take up to `limit` emails due at `now` for delivery (they become `sending`).
    async fn take_due_emails(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<EmailRow>>;
    async fn finish_email(&self, id: i64, attempt: &EmailAttempt, at: DateTime<Utc>) -> Result<()>;
    async fn list_emails(&self, status: Option<&str>, limit: u32) -> Result<Vec<EmailRow>>;
    /// Emails left `sending` by a process that stopped go back to the queue.
    async fn requeue_sending_emails(&self) -> Result<u64>;

    /// The high-water mark of a schedule trigger.
    async fn schedule_mark(
        &self,
        runbook: &str,
        trigger_key: &str,
    ) -> Result<Option<DateTime<Utc>>>;
    /// Record a trigger's first mark, unless it has one.
    async fn init_mark(
        &self,
        runbook: &str,
        trigger_key: &str,
        at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>>;
    /// Record due slots (runs, skips, misses) and move the mark, atomically.
    async fn record_slots(&self, batch: &SlotBatch) -> Result<Vec<SlotResult>>;
    async fn run_detail(&self, id: RunId) -> Result<Option<RunDetail>>;

    async fn state_get(
        &self,
        runbook: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>>;
    async fn state_set(
        &self,
        runbook: &str,
        key: &str,
        value: &serde_json::Value,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn state_delete(&self, runbook: &str, key: &str) -> Result<bool>;
}

/// Open the store a URL names: `sqlite://path` or a plain file path.
///
/// Fails when the URL names an unsupported backend, the file cannot be opened
/// or migrated, or (with [`Access::Exclusive`]) another process holds it.
pub async fn open(url: &str, access: Access) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(StoreError::Open {
            path: "postgres".into(),
            cause: "PostgreSQL support is not part of this build yet; use sqlite://FILE".into(),
        });
    }
    Ok(Arc::new(
        SqliteStore::open(&sqlite_path(url), access).await?,
    ))
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

#[derive(Debug, Clone, Serialize)]
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
}
