//! Putting the daemon together from its settings: the store, the runbooks,
//! the executor, dispatcher and intake, crash recovery, the scheduler and the
//! HTTP state; then the background tasks that run beside the server.

use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Options, Parts, housekeeping, kept, reload, shared, watch};
use crate::http::{AppState, DEFAULT_MAX_BODY};
use crate::notify::Mailer;
use crate::run::{Dispatcher, Executor, Intake};
use crate::runbook::{Loader, Registry};
use crate::schedule::Scheduler;
use crate::script::Sandbox;
use crate::store::Access;

/// The daemon, put together and not yet running.
pub(super) struct Assembled {
    pub parts: Arc<Parts>,
    pub app: Arc<AppState>,
    /// What crash recovery did at start.
    pub recovered: crate::run::Recovered,
    scheduler: Scheduler,
    mailer: Option<Mailer>,
}

/// Put the daemon together.
///
/// Fails when the database cannot be opened (or another process holds it),
/// or the effects or the scheduler cannot start.
pub(super) async fn assemble(opts: Options) -> anyhow::Result<Assembled> {
    let Options { config, secrets } = opts;
    let store = crate::store::open(&config.database, Access::Exclusive).await?;
    crate::clock::align(store.as_ref()).await;
    let sandbox = Sandbox::new(config.script_limits());
    let secret_source = secrets.clone();
    let loader = Loader {
        sandbox: sandbox.clone(),
        scripts_dir: config.scripts.clone(),
        default_tz: config.timezone,
        secret_value: Box::new(move |n| secret_source.get(n)),
        settings: config.source.clone(),
        allow_insecure_permissions: config.allow_insecure_permissions,
    };
    // A name two files claim stays with the file its latest run came from.
    let candidates = loader.read(std::slice::from_ref(&config.runbooks));
    let active = kept::last_run_paths(store.as_ref(), &candidates.contested()).await;
    let mut loaded = candidates.admit(&active);
    kept::restore_broken(store.as_ref(), &loader, &mut loaded).await;
    let registry = Arc::new(RwLock::new(Registry::default()));
    registry.write().expect("registry lock").apply(loaded);
    let (closing, interrupt) = (CancellationToken::new(), CancellationToken::new());
    let (effects, mailer) = crate::run::build_effects(&config, &store, &secrets)?;
    let executor = Executor::new(
        store.clone(),
        sandbox.clone(),
        secrets.clone(),
        config.timezone,
        config.workers,
    )
    .with_effects(effects);
    let lookup_registry = registry.clone();
    let lookup =
        Arc::new(move |name: &str| lookup_registry.read().expect("registry lock").get(name));
    let dispatcher = Dispatcher::new(
        Arc::new(executor),
        lookup.clone(),
        closing.clone(),
        interrupt.clone(),
    );
    let recovered = crate::run::recover(store.as_ref(), lookup.as_ref()).await?;
    let intake = Intake::start(store.clone(), Some(dispatcher.clone()));
    // Beside the start, not before it: a thousand runbooks' first versions
    // are a thousand writes.
    let loaded_now = registry.read().expect("registry lock").all();
    tokio::spawn(kept::save_loaded(intake.clone(), loaded_now));
    let (scheduler, handle) = Scheduler::new(store.clone(), intake.clone());
    let parts = Arc::new(Parts {
        config,
        store,
        loader,
        registry,
        dispatcher,
        intake,
        scheduler: handle,
        closing,
        interrupt,
    });
    let app = Arc::new(AppState {
        registry: parts.registry.clone(),
        store: parts.store.clone(),
        dispatcher: parts.dispatcher.clone(),
        intake: parts.intake.clone(),
        sandbox,
        secrets,
        closing: parts.closing.clone(),
        api_token: parts.config.api_token.as_ref().map(|t| t.0.clone()),
        metrics: crate::telemetry::install(),
        reload: reload::reload_fn(parts.clone()),
        max_body: DEFAULT_MAX_BODY,
        timezone: parts.config.timezone,
        auth_failures: Default::default(),
        database: crate::store::shown_url(&parts.config.database),
        retention: parts.config.retention,
    });
    Ok(Assembled {
        parts,
        app,
        recovered,
        scheduler,
        mailer,
    })
}

/// The tasks beside the server: the scheduler, the mailer, the file watch
/// and SIGHUP reloads, and housekeeping. They stop when shutdown begins.
pub(super) fn background(d: Assembled) -> TaskTracker {
    let parts = &d.parts;
    let tasks = TaskTracker::new();
    tasks.spawn(d.scheduler.run(parts.closing.clone()));
    parts
        .scheduler
        .set_runbooks(parts.registry.read().expect("registry lock").all());
    if let Some(m) = d.mailer {
        tasks.spawn(m.run(parts.closing.clone()));
    }
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let dirs = [parts.config.runbooks.clone(), parts.config.scripts.clone()];
    match watch::start(&dirs, reload_tx.clone()) {
        Ok(w) => {
            let closing = parts.closing.clone();
            // The watch lives until shutdown begins.
            tasks.spawn(async move {
                closing.cancelled().await;
                drop(w);
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the runbook directories; reload with SIGHUP")
        }
    }
    tasks.spawn(reload::reload_on_sighup(reload_tx, parts.closing.clone()));
    tasks.spawn(reload::reloader(
        parts.clone(),
        reload_rx,
        parts.closing.clone(),
    ));
    tasks.spawn(housekeeping::run(parts.clone(), parts.closing.clone()));
    tasks.spawn(shared::run(parts.clone(), parts.closing.clone()));
    tasks
}
