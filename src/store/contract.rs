//! The store contract: what any backend must do, split by role. Each
//! operation has one name end to end, and each guarantee is stated where the
//! operation is, so a second backend (PostgreSQL) implements the same
//! behaviour; `tests/store_contract.rs` checks it through these traits.
//!
//! Several processes may share one store. So a running attempt is held by a
//! [`Lease`] (an owner and an expiry renewed by heartbeat), every change a
//! running attempt makes is fenced by it (a write from an owner that lost the
//! lease changes nothing and fails with [`StoreError::Fenced`]), and recovery
//! takes back only runs whose lease expired.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::*;

/// The hold of one owner (a daemon process) on one running attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run: RunId,
    pub attempt: AttemptId,
    /// The attempt's number within its run (1 for the first).
    pub number: u32,
    pub owner: String,
}

/// A write that was made but may not be on disk yet; [`Pending::wait`]
/// returns once it is, or fails when it never will be.
pub struct Pending(Option<std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>>>);

impl Pending {
    /// A write already on disk.
    pub fn done() -> Self {
        Pending(None)
    }

    pub fn new(on_disk: impl Future<Output = Result<()>> + Send + 'static) -> Self {
        Pending(Some(Box::pin(on_disk)))
    }

    pub async fn wait(self) -> Result<()> {
        match self.0 {
            Some(on_disk) => on_disk.await,
            None => Ok(()),
        }
    }
}

/// A start asked for and not yet made: [`Starting::made`] returns once it
/// is, with what tells when it is on disk.
pub struct Starting(std::pin::Pin<Box<dyn Future<Output = Result<Pending>> + Send>>);

impl Starting {
    /// A start already made.
    pub fn made_already(on_disk: Pending) -> Self {
        Starting(Box::pin(std::future::ready(Ok(on_disk))))
    }

    pub fn new(made: impl Future<Output = Result<Pending>> + Send + 'static) -> Self {
        Starting(Box::pin(made))
    }

    /// Fails when the start could not be made, with `Conflict` when the run
    /// was not startable.
    pub async fn made(self) -> Result<Pending> {
        self.0.await
    }
}

/// Runbook versions, kept once per hash so every run can show what ran.
#[async_trait]
pub trait VersionStore: Send + Sync {
    async fn save_version(&self, v: &VersionRow) -> Result<()>;
    async fn version(&self, hash: &str) -> Result<Option<VersionRow>>;
    /// The version of the file at `path` saved last (versions are saved
    /// when they load and when they run).
    async fn latest_version_from(&self, path: &str) -> Result<Option<VersionRow>>;
}

/// Recording new runs. Only the run intake (`src/run/intake`) calls these.
#[async_trait]
pub trait IntakeStore: Send + Sync {
    /// Record a run asked for by a person; returns it and its status.
    ///
    /// Fails with `Conflict` when its admission refuses it beside an active run.
    async fn insert_run(&self, run: &NewRun) -> Result<(RunId, RunStatus)>;
    /// Record webhook deliveries, and their runs, in one transaction. A
    /// dedup key seen within its window makes a duplicate, which runs nothing.
    async fn accept_deliveries(&self, batch: &[Delivery]) -> Result<Vec<Accepted>>;
    /// Record due slots (runs, skips, misses) and move the mark, atomically.
    /// A slot (runbook, trigger, time) is recorded once, whoever records it.
    async fn record_slots(&self, batch: &SlotBatch) -> Result<Vec<SlotResult>>;
}

/// Runs and their attempts, from the queue to their end.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Runs waiting to run with an id above `after`, oldest first, at most
    /// `limit`; of one runbook, or of all.
    async fn queued_runs(
        &self,
        runbook: Option<&str>,
        after: RunId,
        limit: u32,
    ) -> Result<Vec<RunRow>>;
    /// Take a queued run's runbook slot (`active_key`); false while another
    /// run holds it.
    async fn claim(&self, run: RunId, active_key: &str) -> Result<bool>;
    /// Start the next attempt of a queued run, or of a running run whose last
    /// attempt has ended (a retry), held by `owner` until `lease_until`; the
    /// run becomes `running`. `None` when the run is not startable: another
    /// owner started it first, or it ended.
    async fn start_attempt(
        &self,
        run: RunId,
        owner: &str,
        at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Lease>>;
    /// As [`RunStore::start_attempt`] for attempt `number` (the run's
    /// attempts so far plus one), but it may answer before the start is
    /// made: the [`Starting`] tells when it is made (the run's fenced writes
    /// wait for that), then when it is on disk (whoever lets anything leave
    /// the process for the attempt, an HTTP call, waits for that), and fails
    /// with `Conflict` when the run turns out not to be startable (another
    /// owner started it, it ended, or its attempts are not `number - 1`).
    async fn start_attempt_early(
        &self,
        run: RunId,
        number: u32,
        owner: &str,
        at: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<(Lease, Starting)>>;
    /// Renew a lease; returns whether the run was asked to stop
    /// ([`RunStore::request_cancel`]). Fails with `Fenced` when it was lost.
    async fn heartbeat(&self, lease: &Lease, until: DateTime<Utc>) -> Result<bool>;
    /// Ask whichever process runs them to stop running runs: run `run`, or
    /// (with `runbook`) every running run of `runbook` older than `run`.
    /// Returns how many were asked.
    async fn request_cancel(&self, runbook: Option<&str>, run: RunId) -> Result<u64>;
    /// A step and the log lines written during it, in one transaction (fenced).
    async fn insert_step(&self, lease: &Lease, step: &StepRow, lines: &[LogRow]) -> Result<()>;
    /// Log lines of a running attempt (fenced).
    async fn insert_logs(&self, lease: &Lease, lines: &[LogRow]) -> Result<()>;
    /// End an attempt that will be retried (fenced).
    async fn finish_attempt(
        &self,
        lease: &Lease,
        status: RunStatus,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// The end of a run in one transaction (fenced): its last step when not
    /// yet written, its last log lines and the run's end, which also closes
    /// its open attempt.
    async fn finish(
        &self,
        lease: &Lease,
        step: Option<&StepRow>,
        lines: &[LogRow],
        end: &RunEnd,
    ) -> Result<()>;
    /// End a run that waits, no attempt running: `queued` (cancelled, or
    /// its runbook is gone) or `interrupted` (abandoned). False, and nothing
    /// changed, when its status is no longer `from`.
    async fn end_waiting(&self, run: RunId, from: RunStatus, end: &RunEnd) -> Result<bool>;
    /// Put an interrupted run back in the queue, holding its runbook's
    /// `active_key` when given and free (otherwise it claims the runbook
    /// later, like any queued run). False, and nothing changed, when the run
    /// is not `interrupted`, or was asked to stop ([`RunStore::request_cancel`]).
    async fn requeue(&self, run: RunId, active_key: Option<&str>) -> Result<bool>;
    /// Runs whose latest attempt's lease expired by `expired_by` (their
    /// owner stopped) become `interrupted` at `at`, with that attempt;
    /// returns them as they were.
    async fn recover(&self, expired_by: DateTime<Utc>, at: DateTime<Utc>) -> Result<Vec<RunRow>>;
    /// How far the database server's clock is ahead of this host's, when
    /// several processes share the store and the server's clock decides
    /// due-ness and lease expiry; `None` when this process is the only
    /// writer (its own clock decides).
    async fn clock_offset(&self) -> Result<Option<chrono::TimeDelta>>;
    /// True when this process is the only one that can write (SQLite's file
    /// lock): every lease it does not hold is dead, whatever its expiry.
    fn sole_writer(&self) -> bool;
}

/// The schedule's high-water marks.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// The high-water mark of a schedule trigger.
    async fn schedule_mark(
        &self,
        runbook: &str,
        trigger_key: &str,
    ) -> Result<Option<DateTime<Utc>>>;
    /// Record a trigger's first mark, unless it has one; returns the mark.
    async fn init_mark(
        &self,
        runbook: &str,
        trigger_key: &str,
        at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>>;
}

/// The log of webhook deliveries.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Deliveries, newest first.
    async fn list_deliveries(
        &self,
        runbook: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>>;
}

/// Issues runbooks raise. A write from a run passes its lease (fenced); a
/// person's passes `None`.
#[async_trait]
pub trait IssueStore: Send + Sync {
    /// Open (or bump, or reopen) an issue; returns it and whether it is new.
    async fn open_issue(
        &self,
        fence: Option<&Lease>,
        issue: &IssueOpen,
    ) -> Result<(IssueRow, bool)>;
    /// Resolve an issue; false when it was not open or acknowledged.
    async fn resolve_issue(
        &self,
        fence: Option<&Lease>,
        key: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Acknowledge an open issue; false when it was not open.
    async fn ack_issue(&self, key: &str, at: DateTime<Utc>) -> Result<bool>;
    async fn issue(&self, key: &str) -> Result<Option<IssueRow>>;
    async fn list_issues(&self, filter: &IssueFilter) -> Result<Vec<IssueRow>>;
    /// Open (and acknowledged) issues by severity.
    async fn open_issue_counts(&self) -> Result<Vec<(Severity, i64)>>;
}

/// The email outbox: queued once per idempotency key, sent once.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Queue an email (fenced when a run queues it); returns its id and
    /// whether it is new (the existing one when the key was used).
    async fn queue_email(&self, fence: Option<&Lease>, email: &NewEmail) -> Result<(i64, bool)>;
    /// Take up to `limit` emails due at `now` for delivery (they become `sending`).
    async fn take_due_emails(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<EmailRow>>;
    /// Record what became of an email taken by [`OutboxStore::take_due_emails`];
    /// false (nothing written) when it is no longer this taker's: it was
    /// queued again (its taker's hold expired) and taken since.
    async fn finish_email(
        &self,
        email: &EmailRow,
        attempt: &EmailAttempt,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    async fn list_emails(&self, status: Option<EmailStatus>, limit: u32) -> Result<Vec<EmailRow>>;
    /// Emails left `sending` by a process that stopped go back to the queue.
    async fn requeue_sending_emails(&self) -> Result<u64>;
}

/// What runbooks keep between runs.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// A value, unless it is absent or expired at `now`.
    async fn state_get(
        &self,
        runbook: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>>;
    /// Keep a value (fenced when a run writes it), until `expires_at` when given.
    async fn state_set(
        &self,
        fence: Option<&Lease>,
        runbook: &str,
        key: &str,
        value: &serde_json::Value,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn state_delete(&self, fence: Option<&Lease>, runbook: &str, key: &str) -> Result<bool>;
}

/// Reading history, and keeping it within retention.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>>;
    async fn run_detail(&self, id: RunId) -> Result<Option<RunDetail>>;
    /// The latest run of each runbook, and when each last succeeded (one query).
    async fn last_runs(&self, runbooks: &[String]) -> Result<HashMap<String, LastRun>>;
    /// How many runs are queued.
    async fn queue_depth(&self) -> Result<i64>;
    /// Delete finished runs (with their attempts, steps and logs) created before `before`.
    async fn prune(&self, before: DateTime<Utc>) -> Result<u64>;
    /// Whether `owner` leads housekeeping (retention, the dead-man switch)
    /// until `until`: true when it already did or no other owner's hold is
    /// still valid. With one writing process, always true.
    async fn lead_housekeeping(&self, owner: &str, until: DateTime<Utc>) -> Result<bool>;
    /// A cheap query that proves the database answers.
    async fn ping(&self) -> Result<()>;
    /// Whether writes succeed now: fails with why the last one did not
    /// (a full disk) until one succeeds again or space was freed.
    async fn writable(&self) -> Result<()>;
}

/// What daemons sharing the store tell each other about themselves.
#[async_trait]
pub trait FleetStore: Send + Sync {
    /// The runbooks `owner` has loaded now, by (name, version hash); the
    /// store keeps them until the next call, and forgets daemons that stop
    /// calling. Called every few seconds by each daemon sharing the store.
    async fn publish_versions(&self, owner: &str, loaded: &[(String, String)]) -> Result<()>;
    /// The runbooks that daemons heard from within `seen_within` (by the
    /// database's clock) have loaded in different versions, with each
    /// version and how many daemons run it, most first. Empty with one
    /// writing process.
    async fn version_skew(
        &self,
        seen_within: std::time::Duration,
    ) -> Result<HashMap<String, Vec<LoadedVersion>>>;
}

/// Every role: what the daemon holds.
pub trait Store:
    VersionStore
    + IntakeStore
    + RunStore
    + ScheduleStore
    + WebhookStore
    + IssueStore
    + OutboxStore
    + StateStore
    + HistoryStore
    + FleetStore
{
}

impl<T> Store for T where
    T: VersionStore
        + IntakeStore
        + RunStore
        + ScheduleStore
        + WebhookStore
        + IssueStore
        + OutboxStore
        + StateStore
        + HistoryStore
        + FleetStore
{
}
