//! One file per CLI command; `dispatch` is the one `match`.

mod check;
mod deliveries;
mod emails;
mod issues;
mod migrate_store;
mod next;
mod prune;
mod remote;
mod run;
mod runbook;
mod runbooks;
mod runs;
mod schema;
mod serve;
mod show;
mod test;

use std::sync::Arc;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::runbook::{Loaded, Loader};
use crate::script::Sandbox;
use crate::secrets::Secrets;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The command did what was asked (for `run`: the run succeeded).
    Ok = 0,
    /// The command worked but the answer is "no": the run did not succeed,
    /// `check` found errors, the run asked for does not exist.
    Failed = 1,
    /// The request cannot be carried out as given: bad flags or params, an
    /// unknown or invalid runbook.
    Usage = 2,
    /// The environment is not usable: config, secrets file or database.
    Unavailable = 3,
}

/// A command's failure: one sentence, an optional hint, and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Failure::new(Exit::Unavailable, e.to_string())
    }
}

pub type Outcome = Result<Exit, Failure>;

/// A filter flag naming a stored status or kind: unknown text is a usage
/// error that lists the names (or the one meant).
pub fn filter<T: crate::store::StoredName>(
    flag: &str,
    given: Option<&str>,
) -> Result<Option<T>, Failure> {
    let Some(s) = given else { return Ok(None) };
    T::parse(s).map(Some).ok_or_else(|| {
        let hint = crate::runbook::did_you_mean(s, T::names().iter().copied())
            .unwrap_or_else(|| format!("a {flag} is one of {}", T::names().join(", ")));
        Failure::new(Exit::Usage, format!("unknown {flag} \"{s}\"")).hint(hint)
    })
}

/// What every command starts from: the config and the secrets.
pub struct Env {
    pub config: Config,
    pub secrets: Secrets,
}

impl Env {
    pub fn new(cli: &Cli) -> Result<Self, Failure> {
        let config = Config::load(&cli.global).map_err(|m| Failure::new(Exit::Unavailable, m))?;
        let secrets = match &config.secrets_file {
            Some(p) => Secrets::from_file(p).map_err(|m| Failure::new(Exit::Unavailable, m))?,
            None => Secrets::default(),
        };
        Ok(Env { config, secrets })
    }

    pub fn loader(&self, sandbox: Arc<Sandbox>) -> Loader {
        let secrets = self.secrets.clone();
        Loader {
            sandbox,
            scripts_dir: self.config.scripts.clone(),
            default_tz: self.config.timezone,
            secret_value: Box::new(move |name| secrets.get(name)),
            settings: self.config.source.clone(),
            allow_insecure_permissions: self.config.allow_insecure_permissions,
        }
    }

    /// Load the runbooks directory.
    pub fn load_runbooks(&self, sandbox: Arc<Sandbox>) -> Loaded {
        self.loader(sandbox)
            .load(std::slice::from_ref(&self.config.runbooks))
    }
}

pub async fn dispatch(cli: Cli) -> Outcome {
    // Needs no config: an editor asks it before there is one.
    if let Command::Schema(args) = &cli.command {
        return Ok(schema::run(args));
    }
    let env = Env::new(&cli)?;
    let sandbox = Sandbox::new(env.config.script_limits());
    match cli.command {
        Command::Check(args) => check::run(&env, sandbox, args),
        Command::Run(args) => run::run(&env, sandbox, args).await,
        Command::Runs(args) => runs::run(&env, args).await,
        Command::Show(args) => show::run(&env, args).await,
        Command::Serve(args) => serve::run(&env, args).await,
        Command::Next(args) => next::run(&env, sandbox, args),
        Command::Runbooks(args) => runbooks::run(&env, sandbox, args).await,
        Command::Prune(args) => prune::run(&env, args).await,
        Command::Deliveries(args) => deliveries::run(&env, args).await,
        Command::Issues(args) => issues::run(&env, args).await,
        Command::Emails(args) => emails::run(&env, args).await,
        Command::Test(args) => test::run(&env, sandbox, args).await,
        Command::MigrateStore(args) => migrate_store::run(args).await,
        Command::Schema(args) => Ok(schema::run(&args)),
    }
}
