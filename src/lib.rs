//! runbookd runs support and operations runbooks: YAML files with Rhai scripts,
//! on schedules, webhooks or by hand, recording every run.
//!
//! - [`cli`]: the command-line types, nothing else.
//! - [`config`]: daemon settings from defaults, file, environment and flags.
//! - [`secrets`]: where secret values come from, and how they are masked.
//! - [`text`]: what a hand-written file (runbook, script) may hold to be read as text.
//! - [`duration`]: duration strings as runbooks write them.
//! - [`script`]: the hardened Rhai sandbox and the script API behind a `Host` trait.
//! - [`runbook`]: the runbook format, its validation and the directory loader.
//! - [`schema`]: JSON Schemas of the runbook format and of `runbookd.yaml`, for editors.
//! - [`store`]: the database behind a contract of role traits (runs, intake,
//!   schedule, webhooks, issues, outbox, state, history): SQLite for one daemon,
//!   PostgreSQL for several sharing the work.
//! - [`run`]: the only code that creates runs (the intake, whatever fired
//!   them), starts them (the dispatcher) and performs them (the executor).
//! - [`runbook_tests`]: `runbookd test`, runs against recorded HTTP replies and a fixed clock.
//! - [`schedule`]: slots, catch-up and DST as pure functions, and the scheduler.
//! - [`http`]: webhooks (HTTP only; the intake judges them), the API, the web UI,
//!   health, metrics.
//! - [`notify`]: the email outbox's mailer and the digest templates.
//! - [`outbound`]: the one HTTP client runs use, with its egress policy.
//! - [`daemon`]: assembly and lifecycle of `runbookd serve`.
//! - [`output`], [`telemetry`]: terminal tables and times; metrics and logs.
//! - [`commands`]: one file per CLI command.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod http;
pub mod notify;
pub mod outbound;
pub mod output;
pub mod run;
pub mod runbook;
pub mod runbook_tests;
pub mod schedule;
pub mod schema;
pub mod script;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod text;
