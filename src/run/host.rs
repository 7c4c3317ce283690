//! The executor's side of the script API: what `log`, `secret`, `state` and
//! the clock do for one run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;

use super::RunEvent;
use super::start_gate::StartGate;
use crate::runbook::Runbook;
use crate::script::{Host, LogLevel};
use crate::secrets::Redactor;
use crate::store::{Lease, LogRow, RunId, Starting, Store, StoreError};

/// A run keeps at most this many log lines; the rest are counted, not stored.
pub const MAX_LOG_LINES: usize = 10_000;
/// A state value is at most this large, as JSON.
pub const MAX_STATE_BYTES: usize = 1024 * 1024;

/// The clock scripts see: real time, real time shifted to start at `--now`,
/// or (in runbook tests) a time that stands still.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    kind: ClockKind,
}

#[derive(Debug, Clone, Copy)]
enum ClockKind {
    Real,
    From(DateTime<Utc>, Instant),
    Fixed(DateTime<Utc>),
}

impl Clock {
    pub fn real() -> Self {
        Clock {
            kind: ClockKind::Real,
        }
    }

    /// A clock that reads `start` now and advances in real time.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Clock {
            kind: ClockKind::From(start, Instant::now()),
        }
    }

    /// A clock that always reads `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Clock {
            kind: ClockKind::Fixed(at),
        }
    }

    /// Whether time stands still (nothing should wait on it).
    pub fn is_fixed(&self) -> bool {
        matches!(self.kind, ClockKind::Fixed(_))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.kind {
            ClockKind::Real => crate::clock::now(),
            ClockKind::From(start, at) => {
                start + chrono::TimeDelta::from_std(at.elapsed()).unwrap_or_default()
            }
            ClockKind::Fixed(at) => at,
        }
    }
}

/// What one run's host is built from: set once, when the run starts.
pub struct RunContext {
    pub store: Arc<dyn Store>,
    pub runbook: Arc<Runbook>,
    pub run_id: RunId,
    /// Declared secrets that have a value, by name.
    pub secrets: HashMap<String, String>,
    pub clock: Clock,
    pub timezone: Tz,
    /// Progress for a person watching.
    pub events: Option<UnboundedSender<RunEvent>>,
    /// HTTP, email and data; `None` where a run cannot reach them.
    pub effects: Option<Arc<super::Effects>>,
    /// What makes this run's email keys unique: its slot, delivery or id.
    pub identity: String,
    /// Mutating calls are recorded in `plan`, not performed.
    pub dry_run: bool,
    /// Cancelled when the run is (a person, `replace`, shutdown, a lost
    /// lease): calls in flight stop.
    pub cancel: CancellationToken,
}

/// One run's side of the script API. Its inputs come from a
/// [`RunContext`]; the rest is what the run accumulates as it goes.
pub struct RunHost {
    pub store: Arc<dyn Store>,
    pub handle: Handle,
    pub runbook: String,
    pub run_id: RunId,
    /// The hold on the current attempt: every write the run makes is fenced
    /// by it. Set when an attempt starts.
    lease: Mutex<Option<Lease>>,
    /// The step now running, for log lines; `None` between steps.
    pub step: Mutex<Option<String>>,
    pub redactor: Redactor,
    pub secrets: HashMap<String, String>,
    pub declared: Vec<String>,
    pub clock: Clock,
    pub timezone: Tz,
    /// Lines not yet written to the store; written with each step's record,
    /// and by the executor every [`super::executor::LIVE_LOG`] meanwhile, so
    /// a person following the run (`runbookd run` through the daemon,
    /// `show`) sees them as they happen.
    pending: Mutex<Vec<LogRow>>,
    /// Held from taking pending lines until they are written, so lines reach
    /// the store (and get their ids) in the order they were logged even when
    /// two writers race. A tokio mutex: it is held across the write.
    write_order: tokio::sync::Mutex<()>,
    lines: AtomicUsize,
    pub events: Option<UnboundedSender<RunEvent>>,
    pub effects: Option<Arc<super::Effects>>,
    pub http_allow: Vec<String>,
    /// The least time between two HTTP calls, and when the last one ended.
    pub http_min_interval: Duration,
    pub last_http: Mutex<Option<Instant>>,
    pub identity: String,
    pub dry_run: bool,
    pub plan: Mutex<Vec<String>>,
    /// `email::send` calls so far in this attempt (the default email key).
    pub sends: AtomicU32,
    /// When the current step must end (HTTP timeouts never go past it).
    pub deadline: Mutex<Option<std::time::Instant>>,
    pub cancel: CancellationToken,
    /// Whether the first attempt's start is made, and on disk, yet.
    start: StartGate,
}

impl RunHost {
    pub fn new(ctx: RunContext) -> Self {
        let rb = &ctx.runbook;
        RunHost {
            redactor: Redactor::new(ctx.secrets.values().cloned()),
            handle: Handle::current(),
            runbook: rb.name.clone(),
            run_id: ctx.run_id,
            lease: Mutex::new(None),
            step: Mutex::new(None),
            declared: rb.secrets.clone(),
            http_allow: rb.http_allow.clone(),
            http_min_interval: rb.http_min_interval,
            pending: Mutex::new(Vec::new()),
            write_order: tokio::sync::Mutex::new(()),
            lines: AtomicUsize::new(0),
            last_http: Mutex::new(None),
            plan: Mutex::new(Vec::new()),
            sends: AtomicU32::new(0),
            deadline: Mutex::new(None),
            store: ctx.store,
            secrets: ctx.secrets,
            clock: ctx.clock,
            timezone: ctx.timezone,
            events: ctx.events,
            effects: ctx.effects,
            identity: ctx.identity,
            dry_run: ctx.dry_run,
            cancel: ctx.cancel,
            start: StartGate::open(),
        }
    }

    /// The attempt's start was asked for but may not be made, or on disk, yet.
    pub fn start_pending(&self, starting: Starting) {
        self.start.set(starting);
    }

    /// Returns once the attempt's start is made; see [`StartGate::made`].
    pub async fn made(&self) -> Result<(), StoreError> {
        self.start.made().await
    }

    /// Returns once the attempt's start is on disk; see [`StartGate::started`].
    pub async fn started(&self) -> Result<(), StoreError> {
        self.start.started().await
    }

    /// A write of the run's, fenced by its attempt's lease, made once the
    /// attempt's start is (blocking: for the script's thread).
    pub fn fenced<T, Fut>(
        &self,
        write: impl FnOnce(Option<Lease>) -> Fut,
    ) -> crate::store::Result<T>
    where
        Fut: Future<Output = crate::store::Result<T>>,
    {
        self.handle.block_on(async {
            self.made().await?;
            write(self.lease()).await
        })
    }

    /// A new attempt holds the run: its number shows in log lines, and its
    /// lease fences what the run writes.
    pub fn begin_attempt(&self, lease: Lease) {
        self.sends.store(0, Ordering::Relaxed);
        *self.lease.lock().expect("lease lock") = Some(lease);
    }

    /// The current attempt's lease (the fence of the run's writes).
    pub fn lease(&self) -> Option<Lease> {
        self.lease.lock().expect("lease lock").clone()
    }

    /// The current attempt's number (1 before the first starts).
    pub fn attempt(&self) -> u32 {
        self.lease
            .lock()
            .expect("lease lock")
            .as_ref()
            .map_or(1, |l| l.number)
    }

    /// Record a line of the run log (the executor's own notes use this too).
    pub fn note(&self, level: LogLevel, message: &str) {
        let n = self.lines.fetch_add(1, Ordering::Relaxed);
        if n > MAX_LOG_LINES {
            return;
        }
        let message = if n == MAX_LOG_LINES {
            format!(
                "log truncated: this run wrote more than {MAX_LOG_LINES} lines; later lines are not kept"
            )
        } else {
            self.redactor.redact(message)
        };
        let line = LogRow {
            run_id: self.run_id,
            attempt: self.attempt(),
            step: self.step.lock().expect("step lock").clone(),
            at: crate::clock::now(),
            level: if n == MAX_LOG_LINES {
                "warn".into()
            } else {
                level.as_str().into()
            },
            message,
        };
        if let Some(tx) = &self.events {
            let _ = tx.send(RunEvent::Log(line.clone()));
        }
        self.pending.lock().expect("log lock").push(line);
    }

    /// Write pending log lines to the store (fenced by the attempt's lease).
    pub async fn flush(&self) -> crate::store::Result<()> {
        let (_order, lines) = self.take_pending().await;
        match self.lease() {
            Some(lease) if !lines.is_empty() => {
                self.made().await?;
                self.store.insert_logs(&lease, &lines).await
            }
            _ => Ok(()),
        }
    }

    /// The log lines not yet written, to write with another record, and the
    /// turn to write them: hold the guard until they are written.
    pub async fn take_pending(&self) -> (tokio::sync::MutexGuard<'_, ()>, Vec<LogRow>) {
        let turn = self.write_order.lock().await;
        let lines = std::mem::take(&mut *self.pending.lock().expect("log lock"));
        (turn, lines)
    }

    pub fn set_step(&self, name: Option<&str>) {
        *self.step.lock().expect("step lock") = name.map(str::to_string);
    }

    /// The key a state entry is stored under: the script's key with secrets
    /// masked, so every read and write of one key finds the same entry.
    fn state_key(&self, key: &str) -> Result<String, String> {
        if key.is_empty() || key.len() > 256 {
            return Err("a state key is 1 to 256 bytes long".into());
        }
        Ok(self.redactor.redact(key))
    }

    fn store_call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = crate::store::Result<T>>,
    ) -> Result<T, String> {
        self.handle
            .block_on(fut)
            .map_err(|e| format!("{what} failed: {e}"))
    }
}

impl RunHost {
    /// In a dry run, record a mutating call in the plan (and the log) and
    /// return true: the caller must not perform it.
    pub fn planned(&self, what: String) -> bool {
        if !self.dry_run {
            return false;
        }
        let what = self.redactor.redact(&what);
        self.note(LogLevel::Info, &format!("dry run: would {what}"));
        self.plan.lock().expect("plan lock").push(what);
        true
    }

    pub fn block<T>(&self, fut: impl Future<Output = T>) -> T {
        self.handle.block_on(fut)
    }
}

impl Host for RunHost {
    fn issue_open(
        &self,
        key: &str,
        fields: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        super::effects::issue_open(self, key, fields)
    }

    fn issue_resolve(&self, key: &str, note: Option<String>) -> Result<bool, String> {
        super::effects::issue_resolve(self, key, note)
    }

    fn issue_get(&self, key: &str) -> Result<Option<serde_json::Value>, String> {
        super::effects::issue_get(self, key)
    }

    fn issue_list(&self, filter: serde_json::Value) -> Result<serde_json::Value, String> {
        super::effects::issue_list(self, filter)
    }

    fn email_send(&self, message: serde_json::Value) -> Result<i64, String> {
        super::effects::email_send(self, message)
    }

    fn http(&self, call: crate::script::HttpCall) -> Result<serde_json::Value, String> {
        super::effects::http(self, call)
    }

    fn data_read(&self, name: &str) -> Result<serde_json::Value, String> {
        let effects = self
            .effects
            .as_ref()
            .ok_or("data::read is not available here")?;
        let value = super::data::read(&effects.data, name)?;
        let what = match &value {
            serde_json::Value::Array(rows) => format!("{} rows", rows.len()),
            _ => "a value".into(),
        };
        self.note(LogLevel::Info, &format!("data::read {name}: {what}"));
        Ok(value)
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.note(level, message);
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn timezone(&self) -> Tz {
        self.timezone
    }

    fn secret(&self, name: &str) -> Result<String, String> {
        if !self.declared.iter().any(|d| d == name) {
            return Err(format!(
                "secret \"{name}\" is not declared; add it to the runbook's `secrets:`"
            ));
        }
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| format!("secret {name} is not set"))
    }

    fn state_get(&self, key: &str) -> Result<Option<serde_json::Value>, String> {
        let key = &self.state_key(key)?;
        self.store_call(
            "state::get",
            self.store
                .state_get(&self.runbook, key, crate::clock::now()),
        )
    }

    fn state_set(
        &self,
        key: &str,
        value: serde_json::Value,
        ttl: Option<Duration>,
    ) -> Result<(), String> {
        let key = &self.state_key(key)?;
        if self.planned(format!("state::set {key} = {value}")) {
            return Ok(());
        }
        let size = value.to_string().len();
        if size > MAX_STATE_BYTES {
            return Err(format!(
                "state value for \"{key}\" is {size} bytes; the limit is 1 MiB"
            ));
        }
        let now = crate::clock::now();
        let expires = match ttl {
            None => None,
            Some(t) => Some(
                now + chrono::TimeDelta::from_std(t)
                    .map_err(|_| "state ttl too long".to_string())?,
            ),
        };
        let value = self.redactor.redact_json(value);
        self.fenced(|fence| async move {
            let store = &self.store;
            store
                .state_set(fence.as_ref(), &self.runbook, key, &value, expires, now)
                .await
        })
        .map_err(|e| format!("state::set failed: {e}"))
    }

    fn state_delete(&self, key: &str) -> Result<bool, String> {
        let key = &self.state_key(key)?;
        if self.planned(format!("state::delete {key}")) {
            return Ok(self.state_get(key)?.is_some());
        }
        self.fenced(|fence| async move {
            let store = &self.store;
            store.state_delete(fence.as_ref(), &self.runbook, key).await
        })
        .map_err(|e| format!("state::delete failed: {e}"))
    }
}
