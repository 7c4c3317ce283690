//! The command line: clap types and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "runbookd",
    version,
    about = "Runs support and operations runbooks: YAML with Rhai scripts, on schedules, webhooks or by hand."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, shown under their own heading after the
/// command's own.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Config file [default: runbookd.yaml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL [default: sqlite://runbookd.db]
    ///
    /// Not global: only the commands that use the database take it (see
    /// [`Database`]); given before the command, it is taken from here.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Runbooks directory [default: runbooks]
    #[arg(long, global = true, value_name = "DIR")]
    pub runbooks: Option<PathBuf>,
    /// Scripts directory, the only place `import` and `file:` read from [default: scripts]
    #[arg(long, global = true, value_name = "DIR")]
    pub scripts: Option<PathBuf>,
    /// Load runbook and script files or directories that group or others may write,
    /// or that another user owns (refused by default, as cron and ssh do)
    #[arg(long, global = true)]
    pub allow_insecure_permissions: bool,
    /// Diagnostics format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// `--database`, listed with the global options of the commands that use
/// the database only (`check`, `next` and `test` do not).
#[derive(Debug, Args)]
pub struct Database {
    /// Database URL [default: sqlite://runbookd.db]
    #[arg(
        long = "database",
        id = "command_database",
        global = true,
        value_name = "URL",
        help_heading = "Global options",
        display_order = 0
    )]
    pub url: Option<String>,
}

impl Cli {
    /// Parse the process's arguments; `--database` counts wherever it was
    /// given, before the command or after it.
    pub fn parse_args() -> Self {
        let mut cli = <Cli as Parser>::parse();
        if let Some(url) = cli.command.database() {
            cli.global.database = Some(url);
        }
        cli
    }
}

impl Command {
    /// The `--database` given after the command, when it takes one.
    fn database(&mut self) -> Option<String> {
        let db = match self {
            Command::Serve(a) => &mut a.database,
            Command::Run(a) => &mut a.database,
            Command::Runs(a) => &mut a.database,
            Command::Show(a) => &mut a.database,
            Command::Runbooks(a) => &mut a.database,
            Command::Prune(a) => &mut a.database,
            Command::Deliveries(a) => &mut a.database,
            Command::Issues(a) => &mut a.database,
            Command::Emails(a) => &mut a.database,
            Command::Check(_)
            | Command::Next(_)
            | Command::Test(_)
            | Command::Schema(_)
            | Command::MigrateStore(_) => {
                return None;
            }
        };
        db.url.take()
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: schedules, webhooks, the API, hot reload of runbooks/ and scripts/ (and on SIGHUP)
    Serve(ServeArgs),
    /// Validate runbooks; print every error as path:line:col; exit 1 if any
    Check(CheckArgs),
    /// Run a runbook once now, stream its log, record it; exit 0 only on success
    Run(RunArgs),
    /// List recorded runs, newest first
    Runs(RunsArgs),
    /// Show one run: attempts, steps, logs and output
    Show(ShowArgs),
    /// Upcoming fire times of schedules, in their zone, locally and in UTC
    Next(NextArgs),
    /// Each runbook: triggers, next fire, last result, health, load errors; with NAME, its effective settings
    Runbooks(RunbooksArgs),
    /// Delete runs older than the retention period now (the daemon does it on its own)
    Prune(PruneArgs),
    /// Webhook deliveries and what became of them, newest first
    Deliveries(DeliveriesArgs),
    /// Issues runbooks raised: list them, or `ack KEY` / `resolve KEY`
    Issues(IssuesArgs),
    /// The email outbox: queued, sent and failed messages with per-recipient results
    Emails(EmailsArgs),
    /// Run runbook tests (recorded HTTP replies, a fixed clock); exit 1 if any fails
    Test(TestArgs),
    /// Copy a SQLite history into an empty PostgreSQL database (stop the daemon first)
    MigrateStore(MigrateStoreArgs),
    /// Print the JSON Schema of runbook files (or of runbookd.yaml), for editors
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for webhooks, the API and metrics [default: 127.0.0.1:8686]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Runbook files or directories [default: the runbooks directory]
    pub paths: Vec<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The runbook's name
    pub name: String,
    /// A param, as NAME=VALUE (repeatable); lists as a,b or JSON, maps as JSON
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub params: Vec<(String, String)>,
    /// Run as if it were this time (RFC 3339); the clock advances from there
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Print the outcome as JSON instead of streaming the log
    #[arg(long)]
    pub json: bool,
    /// Perform reads; record, print and skip every write (HTTP other than GET/HEAD, email, issues, state)
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this runbook
    #[arg(long, value_name = "NAME")]
    pub runbook: Option<String>,
    /// Only runs with this status (succeeded, failed, timed_out, ...)
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// How many runs to list (1 to 1000)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Only runs older than this run id (the next page)
    #[arg(long, value_name = "RUN_ID")]
    pub before: Option<i64>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's id, as `runbookd runs` lists it
    pub run_id: i64,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct NextArgs {
    /// Only this runbook
    pub name: Option<String>,
    /// How many fire times per trigger
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// Start from this time instead of now (RFC 3339), to preview a DST change
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunbooksArgs {
    /// Show this runbook's effective settings and where each comes from
    pub name: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Only deliveries to this runbook
    #[arg(long, value_name = "NAME")]
    pub runbook: Option<String>,
    /// How many deliveries to list (1 to 1000)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Only deliveries older than this delivery id (the next page)
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
    /// Print the result as JSON (with headers and bodies)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct IssuesArgs {
    #[command(subcommand)]
    pub action: Option<IssueAction>,
    /// Include resolved issues
    #[arg(long)]
    pub all: bool,
    /// Only this severity (critical, high, medium, low, info)
    #[arg(long)]
    pub severity: Option<String>,
    /// Only issues raised by this runbook
    #[arg(long, value_name = "NAME")]
    pub runbook: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Subcommand)]
pub enum IssueAction {
    /// Acknowledge an open issue: someone is on it
    Ack {
        /// The issue's key, as `runbookd issues` lists it
        key: String,
    },
    /// Resolve an issue
    Resolve {
        /// The issue's key, as `runbookd issues` lists it
        key: String,
        /// Why or how it was resolved
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct EmailsArgs {
    /// Only emails with this status (queued, sending, sent, failed)
    #[arg(long)]
    pub status: Option<String>,
    /// How many emails to list (1 to 1000)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Only the tests of this runbook
    pub name: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file's schema
    #[arg(value_enum, default_value_t = SchemaOf::Runbook)]
    pub of: SchemaOf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaOf {
    /// A runbook file (runbooks/*.yaml)
    Runbook,
    /// The daemon's config file (runbookd.yaml)
    Config,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Prune runs older than this instead of the configured retention (e.g. 30d)
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct MigrateStoreArgs {
    /// The SQLite database to copy (sqlite://FILE)
    #[arg(value_name = "FROM")]
    pub from: String,
    /// The PostgreSQL database to copy into, empty (postgres://USER@HOST/DB)
    #[arg(value_name = "TO")]
    pub to: String,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("\"{s}\" is not NAME=VALUE"))
}
