//! The store's own row types, shared by every backend.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ScriptTexts;
use super::kinds::*;

pub type RunId = i64;
pub type AttemptId = i64;

#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub hash: String,
    pub runbook: String,
    pub path: String,
    pub yaml: String,
    pub scripts: ScriptTexts,
    pub created_at: DateTime<Utc>,
}

/// A trigger firing about to be recorded (built by the run intake only).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub runbook: String,
    pub version_hash: String,
    pub trigger_kind: TriggerKind,
    /// Which trigger of the runbook; with `scheduled_at`, the slot.
    pub trigger_key: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub params: serde_json::Value,
    pub trigger_data: serde_json::Value,
    pub dry_run: bool,
    pub created_at: DateTime<Utc>,
    /// How it stands with the runbook's other active runs.
    pub admission: Admission,
}

/// How a new run relates to the other active runs of its runbook (the
/// runbook's `concurrency:`, decided by the run intake; the store applies it
/// in the statement that records the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// `allow`: runs side by side.
    Free,
    /// `forbid`, fired by a schedule or a webhook: recorded as `skipped`
    /// while another run is active.
    SkipIfActive,
    /// `forbid`, asked for by a person: refused (`Conflict`) while another
    /// run is active, so the person hears why.
    RefuseIfActive,
    /// `queue` and `replace`: waits, queued, until it can claim its runbook.
    Queued,
}

/// The slots of one trigger to record in one transaction, with the new mark.
#[derive(Debug, Clone)]
pub struct SlotBatch {
    /// The runs of the due slots, oldest first. Under
    /// [`Admission::SkipIfActive`] the first slot that is not skipped takes
    /// the runbook, and the slots caught up with it queue behind it rather
    /// than skip each other.
    pub runs: Vec<NewRun>,
    /// Slots that are not run: recorded `missed`.
    pub missed: Vec<NewRun>,
    pub runbook: String,
    pub trigger_key: String,
    /// The trigger's new high-water mark (it only moves forward).
    pub mark: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// What became of a slot to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotResult {
    /// A run was created, queued.
    Created(RunId, DateTime<Utc>),
    /// Another run was active (concurrency `forbid`): recorded as skipped.
    Skipped(RunId, DateTime<Utc>),
    /// The slot already had its run (another evaluation got there first).
    Duplicate(DateTime<Utc>),
}

/// A webhook delivery that passed authentication, to record (and maybe run).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub runbook: String,
    pub trigger_key: String,
    pub received_at: DateTime<Utc>,
    /// The provider's delivery id or the `dedup:` value; `None`: no dedup.
    pub dedup_key: Option<String>,
    /// A repeat of `dedup_key` before this time is a duplicate.
    pub dedup_until: DateTime<Utc>,
    pub headers: serde_json::Value,
    pub body: String,
    pub fate: Fate,
}

/// What a delivery should become, unless it is a duplicate.
#[derive(Debug, Clone)]
pub enum Fate {
    /// A run, unless the runbook's `limit:` is reached (then a throttled run).
    Run {
        run: NewRun,
        /// `limit:` as (runs, counted since).
        limit: Option<(u32, DateTime<Utc>)>,
    },
    /// Kept in the log only: filtered by `when:`, or rejected (unreadable).
    Record {
        outcome: DeliveryOutcome,
        detail: String,
    },
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A run was recorded: queued, throttled, or skipped under `forbid`.
    Run {
        delivery: i64,
        run: RunId,
        status: RunStatus,
    },
    /// The same delivery came before: nothing new started.
    Duplicate {
        delivery: i64,
        original: i64,
        run: Option<RunId>,
    },
    /// Recorded without a run (filtered, rejected).
    Recorded { delivery: i64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub runbook: String,
    pub trigger_key: String,
    pub received_at: DateTime<Utc>,
    pub dedup_key: Option<String>,
    pub outcome: DeliveryOutcome,
    pub run_id: Option<RunId>,
    pub duplicate_of: Option<i64>,
    pub headers: serde_json::Value,
    pub body: String,
    pub detail: Option<String>,
    /// The status of its run, when it has one.
    pub run_status: Option<RunStatus>,
}

/// An issue as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IssueRow {
    pub key: String,
    pub runbook: String,
    pub title: String,
    pub severity: Severity,
    pub status: IssueStatus,
    pub details: Option<String>,
    pub link: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub occurrences: i64,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What `issues.open` asks for.
#[derive(Debug, Clone)]
pub struct IssueOpen {
    pub runbook: String,
    pub key: String,
    pub title: String,
    pub severity: Severity,
    pub details: Option<String>,
    pub link: Option<String>,
    pub at: DateTime<Utc>,
}

/// Which issues to list, most recently changed first.
#[derive(Debug, Clone, Default)]
pub struct IssueFilter {
    /// Issues in these statuses; empty: open and acknowledged.
    pub statuses: Vec<IssueStatus>,
    pub severity: Option<Severity>,
    pub runbook: Option<String>,
    /// Only issues first seen before this time.
    pub older_than: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub status: RunStatus,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// A version of a runbook that some daemons sharing the store have loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadedVersion {
    pub hash: String,
    /// How many daemons run it.
    pub daemons: u64,
}

/// A runbook's latest run as lists show it (without its params, trigger
/// data and output, which can be large), and when it last succeeded.
#[derive(Debug, Clone, Default)]
pub struct LastRun {
    pub run: Option<RunSummary>,
    pub last_success: Option<DateTime<Utc>>,
    /// The versions daemons sharing the store run, when they differ
    /// (filled by [`crate::schedule::summary::last_runs`]).
    pub versions: Vec<LoadedVersion>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: RunId,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRow {
    pub id: RunId,
    pub runbook: String,
    pub version_hash: String,
    pub trigger_kind: TriggerKind,
    pub trigger_key: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub params: serde_json::Value,
    pub trigger_data: serde_json::Value,
    pub attempts: u32,
    pub dry_run: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRow {
    pub id: AttemptId,
    pub attempt: u32,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// A step's status uses the run statuses that apply to a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRow {
    pub attempt_id: AttemptId,
    pub position: u32,
    pub name: String,
    /// `succeeded`, `failed`, `skipped`, `timed_out` or `cancelled`.
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRow {
    pub run_id: RunId,
    pub attempt: u32,
    pub step: Option<String>,
    pub at: DateTime<Utc>,
    pub level: String,
    pub message: String,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub runbook: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs with a smaller id: the cursor of the next page.
    pub before: Option<RunId>,
    /// Only runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
}
