//! Test helpers shared by the integration tests: a deployment in a temp
//! directory (runbooks/, scripts/, a SQLite file) and ways to drive it, through
//! the real binary or the library in-process.

#![allow(dead_code)]

pub mod daemon;
pub mod fakes;
pub mod http;
pub mod postgres;
pub mod proxy;
pub mod schema;
pub mod shipped;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use runbookd::run::{Executor, Outcome, RunRequest, TriggerInfo};
use runbookd::runbook::{Loaded, Loader};
use runbookd::script::{Limits, Sandbox};
use runbookd::secrets::Secrets;
use runbookd::store::{Access, Store};
use tokio_util::sync::CancellationToken;

/// Process-wide set-up every test binary needs: one TLS provider (ring), as
/// the daemon installs in `main`.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The value of the API_TOKEN secret the harness gives its runs.
pub const SECRET_VALUE: &str = "tok-3f9a7c21-very-secret";
/// The SMTP user name that `Harness::with_effects` knows as secret `SMTP_USER`
/// (its password is `SECRET_VALUE`, as secret `SMTP_PASSWORD`).
pub const SMTP_USER: &str = "runbookd-mailer";

pub struct Deployment {
    pub dir: tempfile::TempDir,
}

/// What a command printed and how it exited.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(out: Output) -> Self {
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Deployment {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("runbooks")).unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        Deployment { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        self.path().join("runbookd.db")
    }

    pub fn runbooks(&self) -> PathBuf {
        self.path().join("runbooks")
    }

    pub fn scripts(&self) -> PathBuf {
        self.path().join("scripts")
    }

    /// Write `runbooks/<file>` and return its path relative to the deployment.
    pub fn runbook(&self, file: &str, yaml: &str) -> String {
        std::fs::write(self.runbooks().join(file), yaml).unwrap();
        format!("runbooks/{file}")
    }

    pub fn script(&self, file: &str, source: &str) {
        std::fs::write(self.scripts().join(file), source).unwrap();
    }

    /// Run the real binary in the deployment's directory, with its defaults.
    pub fn cli(&self, args: &[&str]) -> Ran {
        self.cli_env(args, &[])
    }

    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        Ran::from(self.command(args, env).output().expect("runbookd starts"))
    }

    /// The real binary with `args` and `env`, in the deployment's directory,
    /// ready to start (to follow its output as it comes).
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbookd"));
        cmd.args(args)
            .current_dir(self.path())
            .env("TZ", "UTC")
            .env_remove("RUST_LOG");
        for (k, _) in std::env::vars() {
            if k.starts_with("RUNBOOKD_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Load the runbooks directory in-process, with `secrets` as the only set secrets.
    pub fn load(&self, sandbox: Arc<Sandbox>, secrets: &'static [&'static str]) -> Loaded {
        Loader {
            sandbox,
            scripts_dir: self.scripts(),
            default_tz: chrono_tz::Tz::UTC,
            settings: None,
            allow_insecure_permissions: false,
            secret_value: Box::new(move |n| {
                secrets
                    .contains(&n)
                    .then(|| "test-secret-of-32-bytes-or-more!".to_string())
            }),
        }
        .load(&[self.runbooks()])
    }

    pub async fn store(&self) -> Arc<dyn Store> {
        runbookd::store::open(
            &format!("sqlite://{}", self.db().display()),
            Access::Exclusive,
        )
        .await
        .expect("the store opens")
    }
}

/// An executor over a real store, running runbooks of a deployment in-process.
pub struct Harness {
    pub deployment: Deployment,
    pub sandbox: Arc<Sandbox>,
    pub executor: Executor,
}

impl Harness {
    pub async fn new(deployment: Deployment, limits: Limits) -> Self {
        Self::with_config(deployment, limits, None).await
    }

    /// A harness whose runs have HTTP and email as `config` sets them up;
    /// returns the mailer too (the test drives its passes).
    pub async fn with_effects(
        deployment: Deployment,
        config: runbookd::config::Config,
    ) -> (Self, Option<runbookd::notify::Mailer>) {
        let mut h = Self::with_config(deployment, Limits::default(), None).await;
        // The SMTP login's secrets, for configurations that name them.
        let secrets = Secrets::from_pairs([
            ("API_TOKEN", SECRET_VALUE),
            ("SMTP_USER", SMTP_USER),
            ("SMTP_PASSWORD", SECRET_VALUE),
        ]);
        let (effects, mailer) =
            runbookd::run::build_effects(&config, h.executor.store(), &secrets).expect("effects");
        let store = h.executor.store().clone();
        h.executor = Executor::new(store, h.sandbox.clone(), secrets, chrono_tz::Tz::UTC, 4)
            .with_effects(effects);
        (h, mailer)
    }

    async fn with_config(deployment: Deployment, limits: Limits, _unused: Option<()>) -> Self {
        init();
        let sandbox = Sandbox::new(limits);
        let store = deployment.store().await;
        let secrets = Secrets::from_pairs([("API_TOKEN", SECRET_VALUE)]);
        let executor = Executor::new(store, sandbox.clone(), secrets, chrono_tz::Tz::UTC, 4);
        Harness {
            deployment,
            sandbox,
            executor,
        }
    }

    /// Everything recorded about a run.
    pub async fn detail(&self, id: runbookd::store::RunId) -> runbookd::store::RunDetail {
        self.executor
            .store()
            .run_detail(id)
            .await
            .expect("the store answers")
            .expect("the run is recorded")
    }

    /// Load the runbooks and run `name` to its end with default params.
    pub async fn run(&self, name: &str) -> Outcome {
        self.run_with(name, false).await
    }

    /// As `run`, optionally as a dry run.
    pub async fn run_with(&self, name: &str, dry_run: bool) -> Outcome {
        let loaded = self.deployment.load(self.sandbox.clone(), &["API_TOKEN"]);
        assert!(
            loaded.errors.is_empty(),
            "runbooks load: {:?}",
            loaded.errors
        );
        let rb = loaded
            .runbooks
            .iter()
            .find(|r| r.name == name)
            .expect("runbook exists")
            .clone();
        let params = runbookd::run::bind_cli_params(&rb, &[]).expect("params bind");
        let mut req = RunRequest::new(rb, TriggerInfo::manual(), params, &CancellationToken::new());
        req.dry_run = dry_run;
        let intake = runbookd::run::Intake::start(self.executor.store().clone(), None);
        let id = intake.submit(&req).await.expect("run recorded");
        self.executor.execute(id, req).await
    }
}
