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
}

/// The host as the engine carries it (in its tag), cheap to clone.
#[derive(Clone)]
pub struct HostHandle(pub Arc<dyn Host>);
