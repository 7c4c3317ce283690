//! The validated runbook: what the scheduler, the webhook server and the
//! executor trust. Everything here has been checked by `validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use crate::script::CompiledScript;

#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    /// The file it came from, as given to the loader.
    pub path: PathBuf,
    pub triggers: Vec<Trigger>,
    /// In the order the file declares them.
    pub params: Vec<ParamDef>,
    pub secrets: Vec<String>,
    pub http_allow: Vec<String>,
    /// The least time between two HTTP calls of a run (spacing writes for
    /// providers that limit them).
    pub http_min_interval: Duration,
    pub concurrency: Concurrency,
    pub catch_up: CatchUp,
    pub catch_up_within: Option<Duration>,
    /// Applies to each attempt of a run.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub limit: Option<RateLimit>,
    pub success_within: Option<Duration>,
    pub steps: Vec<Step>,
    pub version: Arc<Version>,
    /// What the deployment's `runbookd.yaml` set, with where; the rest comes from the file.
    pub overrides: Overrides,
}

/// The values of a runbook that its `runbooks.NAME` entry of `runbookd.yaml`
/// set, each with its origin (`runbookd.yaml:12:5`). Already applied to the
/// runbook; kept so listings can say where each effective value came from.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub enabled: Option<String>,
    /// Param name → origin of its value.
    pub params: BTreeMap<String, String>,
    /// The zone of the cron triggers that name none.
    pub timezone: Option<String>,
    /// Which triggers (by index) took that zone.
    pub zoned_triggers: Vec<usize>,
    /// Host → origin, for the hosts added to the runbook's own list.
    pub http_allow: BTreeMap<String, String>,
}

impl Runbook {
    pub fn param(&self, name: &str) -> Option<&ParamDef> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// The exact text that defines a runbook: its YAML and every script it uses.
#[derive(Debug, Default)]
pub struct Version {
    /// sha256 over the YAML and the scripts, hex.
    pub hash: String,
    pub yaml: String,
    /// Script name (relative to the scripts directory) → source.
    pub scripts: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub enum Trigger {
    Cron {
        expr: String,
        schedule: Box<croner::Cron>,
        timezone: Tz,
    },
    Every {
        interval: Duration,
    },
    Webhook(Box<WebhookTrigger>),
    Manual,
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Cron { .. } => "cron",
            Trigger::Every { .. } => "every",
            Trigger::Webhook(_) => "webhook",
            Trigger::Manual => "manual",
        }
    }

    /// Which trigger of its runbook this is, stable across edits that do not
    /// change it: part of a slot's identity (`cron 0 9 * * 1-5 Europe/Paris`).
    pub fn key(&self) -> String {
        match self {
            Trigger::Cron { expr, timezone, .. } => format!("cron {expr} {timezone}"),
            Trigger::Every { interval } => format!("every {}", crate::duration::spec(*interval)),
            Trigger::Webhook(w) => w.key(),
            Trigger::Manual => "manual".into(),
        }
    }

    /// How the trigger reads in listings: `cron 0 9 * * 1-5 (Europe/Paris)`.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Cron { expr, timezone, .. } => format!("cron {expr} ({timezone})"),
            Trigger::Every { interval } => format!("every {}", crate::duration::spec(*interval)),
            Trigger::Webhook(w) => format!("webhook {} ({})", w.path, w.auth.as_str()),
            Trigger::Manual => "manual".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookTrigger {
    /// The path it answers on: `/hooks/<name>` unless the runbook says otherwise.
    pub path: String,
    pub auth: WebhookAuth,
    /// Secret name, never the value; `None` only for `auth: none`.
    pub secret: Option<String>,
    pub when: Option<CompiledScript>,
    pub dedup: Option<CompiledScript>,
    pub dedup_window: Duration,
    pub content_type: Option<String>,
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub base64: bool,
    pub username: Option<String>,
}

impl WebhookTrigger {
    /// Which trigger of its runbook this is (see [`Trigger::key`]).
    pub fn key(&self) -> String {
        format!("webhook {}", self.path)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookAuth {
    Github,
    Stripe,
    Slack,
    Standard,
    Pagerduty,
    Hmac,
    Bearer,
    Basic,
    None,
}

impl WebhookAuth {
    pub const ALL: &[&str] = &[
        "github",
        "stripe",
        "slack",
        "standard",
        "pagerduty",
        "hmac",
        "bearer",
        "basic",
        "none",
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "github" => Self::Github,
            "stripe" => Self::Stripe,
            "slack" => Self::Slack,
            "standard" => Self::Standard,
            "pagerduty" => Self::Pagerduty,
            "hmac" => Self::Hmac,
            "bearer" => Self::Bearer,
            "basic" => Self::Basic,
            "none" => Self::None,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL[self as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    List,
    Map,
}

impl ParamType {
    pub const ALL: &[&str] = &["string", "integer", "number", "boolean", "list", "map"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            "list" => Self::List,
            "map" => Self::Map,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::ALL[self as usize]
    }
}

#[derive(Debug, Clone)]
pub struct ParamDef {
    pub name: String,
    pub kind: ParamType,
    /// Already checked against `kind`.
    pub default: Option<serde_json::Value>,
    pub description: Option<String>,
    /// A param without a default must be given, unless `required: false`.
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Forbid,
    Allow,
    Replace,
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    Skip,
    Latest,
    All,
}

/// `attempts` counts the first try: `attempts: 3` is one run and two retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub delay: Duration,
    pub backoff: f64,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        delay: Duration::from_secs(30),
        backoff: 2.0,
        max_delay: Duration::from_secs(600),
    };

    /// The wait before attempt `next` (2 for the first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        let factor = self.backoff.powi(next.saturating_sub(2) as i32);
        let secs = (self.delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub runs: u32,
    pub per: Duration,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub description: Option<String>,
    pub script: CompiledScript,
    pub condition: Option<CompiledScript>,
    pub timeout: Option<Duration>,
    pub continue_on_error: bool,
}
