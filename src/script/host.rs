//! What a script may ask of the outside world.
//!
//! The executor implements [`Host`] for each run. Functions called from a
//! script run on a blocking thread, so implementations may block on async work.
//! Later modules (http, email, issues, data) add methods here with the same
//! shape: plain values in, `Result<_, String>` out, the error being a sentence
//! the script author can act on.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => return None,
        })
    }
}

pub trait Host: Send + Sync + 'static {
    /// Append a line to the run log. The host redacts secrets.
    fn log(&self, level: LogLevel, message: &str);
    /// The run's clock: real time, or the `--now` a person asked for.
    fn now(&self) -> DateTime<Utc>;
    /// The zone `format()` uses when a script names none.
    fn timezone(&self) -> Tz;
    /// The value of a declared secret.
    fn secret(&self, name: &str) -> Result<String, String>;
    fn state_get(&self, key: &str) -> Result<Option<serde_json::Value>, String>;
    fn state_set(
        &self,
        key: &str,
        value: serde_json::Value,
        ttl: Option<Duration>,
    ) -> Result<(), String>;
    /// Whether the key existed.
    fn state_delete(&self, key: &str) -> Result<bool, String>;

    /// `issues::open(key, #{title, severity, details, link})` → `#{is_new, occurrences, status, first_seen, ...}`.
    fn issue_open(
        &self,
        key: &str,
        fields: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let _ = (key, fields);
        Err(unavailable("issues::open"))
    }
    /// `issues::resolve(key, note)` → whether it was open.
    fn issue_resolve(&self, key: &str, note: Option<String>) -> Result<bool, String> {
        let _ = (key, note);
        Err(unavailable("issues::resolve"))
    }
    fn issue_get(&self, key: &str) -> Result<Option<serde_json::Value>, String> {
        let _ = key;
        Err(unavailable("issues::get"))
    }
    /// `issues::list(#{status, severity, runbook, older_than})`.
    fn issue_list(&self, filter: serde_json::Value) -> Result<serde_json::Value, String> {
        let _ = filter;
        Err(unavailable("issues::list"))
    }
    /// `email::send(#{to, cc, subject, text, html, template, data, key})` → the outbox id.
    fn email_send(&self, message: serde_json::Value) -> Result<i64, String> {
        let _ = message;
        Err(unavailable("email::send"))
    }
    /// `data::read(name)`: a file of the deployment's `data/` directory,
    /// parsed by its extension (CSV → array of maps, YAML/JSON → value).
    fn data_read(&self, name: &str) -> Result<serde_json::Value, String> {
        let _ = name;
        Err(unavailable("data::read"))
    }
    /// `http::*` → `#{status, ok, headers, body, json, elapsed_ms}`.
    fn http(&self, call: HttpCall) -> Result<serde_json::Value, String> {
        let _ = call;
        Err(unavailable("http"))
    }
}

fn unavailable(what: &str) -> String {
    format!("{what} is not available here")
}

/// An HTTP request as a script describes it.
#[derive(Debug, Clone, Default)]
pub struct HttpCall {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: HttpBody,
    pub timeout: Option<Duration>,
    pub bearer: Option<String>,
    pub basic: Option<(String, String)>,
    /// Extra tries on 429/503 and connection errors (idempotent requests only).
    pub retries: u32,
    /// The script says this call only reads (a JSON-RPC or search POST): a
    /// dry run performs it.
    pub read_only: bool,
}

#[derive(Debug, Clone, Default)]
pub enum HttpBody {
    #[default]
    None,
    Json(serde_json::Value),
    Form(Vec<(String, String)>),
    Text(String),
}

/// The host as the engine carries it (in its tag), cheap to clone. Scripts
/// reach the host only through [`HostHandle::ask`] and
/// [`HostHandle::ask_json`], so what the daemon allocates to answer is never
/// counted against the script's memory budget (see `super::memory`).
#[derive(Clone)]
pub struct HostHandle(Arc<dyn Host>);

impl HostHandle {
    pub fn new(host: Arc<dyn Host>) -> Self {
        HostHandle(host)
    }

    /// Ask the host for something. What it allocates meanwhile (a query
    /// handed to the database's thread, buffers another thread frees) is the
    /// daemon's, not the script's: it is not counted. Arguments converted from
    /// script values belong inside `f`, since the host keeps or frees them.
    pub fn ask<R>(&self, f: impl FnOnce(&dyn Host) -> R) -> R {
        super::memory::uncounted(|| f(&*self.0))
    }

    /// Ask the host for JSON and turn it into a script value: the value the
    /// script then holds counts, the JSON the host answered with does not.
    pub fn ask_json(
        &self,
        f: impl FnOnce(&dyn Host) -> Result<Option<serde_json::Value>, String>,
    ) -> Result<Option<rhai::Dynamic>, String> {
        let answer = self.ask(f)?;
        let value = answer.as_ref().map(super::convert::from_json);
        super::memory::uncounted(|| drop(answer));
        Ok(value)
    }
}
