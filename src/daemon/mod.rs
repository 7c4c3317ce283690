//! Assembly and lifecycle of `runbookd serve`: open the store, load the
//! runbooks, recover what a previous process left, start the scheduler, the
//! dispatcher, the file watch and housekeeping; on stop, take no new work, let
//! running runs finish for a grace period, then interrupt them.

mod watch;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runbook::{Changes, Registry};

use crate::config::Config;
use crate::http::{Acceptor, AppState, DEFAULT_MAX_BODY, Reload, ReloadReport};
use crate::run::{Dispatcher, Executor};
use crate::runbook::Loader;
use crate::schedule::slots::{Schedule, upcoming};
use crate::schedule::{Scheduler, SchedulerHandle};
use crate::script::Sandbox;
use crate::secrets::Secrets;
use crate::store::{Access, Store};

/// After the grace period, interrupted runs get this long to record themselves.
const INTERRUPT_WAIT: Duration = Duration::from_secs(10);

pub struct Options {
    pub config: Config,
    pub secrets: Secrets,
    /// Cancelled to stop the daemon (the first SIGTERM or SIGINT).
    pub stop: CancellationToken,
}

struct Parts {
    config: Config,
    store: Arc<dyn Store>,
    loader: Loader,
    registry: Arc<RwLock<Registry>>,
    dispatcher: Arc<Dispatcher>,
    scheduler: SchedulerHandle,
}

/// Run the daemon until `opts.stop` is cancelled.
///
/// Fails before serving when the database cannot be opened (or another
/// process holds it) or the scheduler cannot start; once serving, problems
/// are logged and the daemon goes on.
pub async fn serve(opts: Options) -> anyhow::Result<()> {
    let Options {
        config,
        secrets,
        stop,
    } = opts;
    let store = crate::store::open(&config.database, Access::Exclusive).await?;
    let listener = bind(&config).await?;
    let metrics = crate::telemetry::install();
    let sandbox = Sandbox::new(config.script_limits());
    let secret_source = secrets.clone();
    let loader = Loader {
        sandbox: sandbox.clone(),
        scripts_dir: config.scripts.clone(),
        default_tz: config.timezone,
        allow_insecure_permissions: config.allow_insecure_permissions,
        secret_value: Box::new(move |n| secret_source.get(n)),
    };
    let candidates = loader.read(std::slice::from_ref(&config.runbooks));
    let active = last_run_paths(&*store, &candidates.contested()).await;
    let registry = Arc::new(RwLock::new(Registry::default()));
    registry
        .write()
        .expect("registry lock")
        .apply(candidates.admit(&active));

    let intake = CancellationToken::new();
    let interrupt = CancellationToken::new();
    let (effects, mailer) = crate::run::build_effects(&config, &store, &secrets)?;
    let executor = Arc::new(
        Executor::new(
            store.clone(),
            sandbox.clone(),
            secrets.clone(),
            config.timezone,
            config.workers,
        )
        .with_effects(effects),
    );
    let lookup_registry = registry.clone();
    let lookup =
        Arc::new(move |name: &str| lookup_registry.read().expect("registry lock").get(name));
    let dispatcher = Dispatcher::new(executor, lookup, intake.clone(), interrupt.clone());
    let (stuck, retried) = dispatcher.recover().await?;
    if stuck > 0 {
        tracing::warn!(
            interrupted = stuck,
            retried,
            "runs left running by a stopped process were marked interrupted"
        );
    }
    let (scheduler, handle) = Scheduler::new(store.clone(), dispatcher.clone()).await?;
    let tasks = TaskTracker::new();
    tasks.spawn(scheduler.run(intake.clone()));
    handle.set_runbooks(registry.read().expect("registry lock").all());

    let parts = Arc::new(Parts {
        config,
        store,
        loader,
        registry,
        dispatcher: dispatcher.clone(),
        scheduler: handle,
    });
    let addr = listener.local_addr()?;
    let server_stop = CancellationToken::new();
    let app = Arc::new(AppState {
        registry: parts.registry.clone(),
        store: parts.store.clone(),
        dispatcher: dispatcher.clone(),
        sandbox,
        secrets,
        acceptor: Acceptor::start(parts.store.clone(), dispatcher.clone()),
        intake: intake.clone(),
        api_token: parts.config.api_token.as_ref().map(|t| t.0.clone()),
        metrics,
        reload: reload_fn(parts.clone()),
        max_body: DEFAULT_MAX_BODY,
        timezone: parts.config.timezone,
        saved: Default::default(),
        auth_failures: Default::default(),
    });
    let limits = parts.config.server;
    let server = {
        let stop = server_stop.clone();
        tokio::spawn(async move {
            crate::http::serve(listener, crate::http::router(app), limits, stop).await
        })
    };
    print_summary(&parts, &addr, stuck, retried);
    dispatcher.pump_all().await;

    let (reload_tx, reload_rx) = mpsc::channel(1);
    let dirs = [parts.config.runbooks.clone(), parts.config.scripts.clone()];
    let _watch = match watch::start(&dirs, reload_tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the runbook directories; reload with SIGHUP");
            None
        }
    };
    tasks.spawn(reload_on_sighup(reload_tx, intake.clone()));
    tasks.spawn(reloader(parts.clone(), reload_rx, intake.clone()));
    tasks.spawn(housekeeping(parts.clone(), intake.clone()));
    if let Some(m) = mailer {
        tasks.spawn(m.run(intake.clone()));
    }

    stop.cancelled().await;
    let grace = parts.config.shutdown_grace;
    tracing::info!(running = dispatcher.running(), grace = %crate::duration::spec(grace), "shutting down: taking no new work");
    say(&format!(
        "shutting down: waiting up to {} for {} running run(s)\n",
        crate::duration::spec(grace),
        dispatcher.running()
    ));
    intake.cancel();
    dispatcher.tracker.close();
    if tokio::time::timeout(grace, dispatcher.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = dispatcher.running(),
            "grace period over: interrupting the runs still going"
        );
        interrupt.cancel();
        let _ = tokio::time::timeout(INTERRUPT_WAIT, dispatcher.tracker.wait()).await;
    }
    server_stop.cancel();
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), server).await {
        tracing::error!(error = %e, "the HTTP server stopped with an error");
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    say("stopped\n");
    Ok(())
}

/// Bind the HTTP listener, refusing a non-loopback address without an API token.
async fn bind(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = tokio::net::lookup_host(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve the listen address {}: {e}", config.listen))?
        .next()
        .ok_or_else(|| {
            anyhow::anyhow!("the listen address {} resolves to nothing", config.listen)
        })?;
    crate::http::check_bind(&addr, config.api_token.as_ref().map(|t| t.0.as_str()))
        .map_err(anyhow::Error::msg)?;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr}: {e}; is another runbookd running, or set --listen"
        )
    })
}

/// For names several files claim at start, the file the latest run came from:
/// that runbook was active, and stays so.
async fn last_run_paths(
    store: &dyn crate::store::Store,
    names: &[String],
) -> std::collections::HashMap<String, std::path::PathBuf> {
    let mut active = std::collections::HashMap::new();
    for name in names {
        let filter = crate::store::RunFilter {
            runbook: Some(name.clone()),
            limit: 1,
            ..Default::default()
        };
        let Ok(runs) = store.list_runs(&filter).await else {
            continue;
        };
        if let Some(run) = runs.first()
            && let Ok(Some(v)) = store.version(&run.version_hash).await
        {
            active.insert(name.clone(), v.path.into());
        }
    }
    active
}

fn reload_fn(parts: Arc<Parts>) -> Reload {
    Arc::new(move || {
        let parts = parts.clone();
        Box::pin(async move {
            reload(&parts).await;
            let reg = parts.registry.read().expect("registry lock");
            ReloadReport {
                runbooks: reg.all().len(),
                errors: reg.errors.iter().map(ToString::to_string).collect(),
            }
        })
    })
}

fn print_summary(p: &Parts, addr: &std::net::SocketAddr, stuck: usize, retried: usize) {
    let reg = p.registry.read().expect("registry lock");
    let runbooks = reg.all();
    let mut out = String::new();
    out.push_str(&format!("runbookd {} serving\n", env!("CARGO_PKG_VERSION")));
    out.push_str(&format!("  listening  http://{addr}\n"));
    out.push_str(&format!("  database   {}\n", p.config.database));
    out.push_str(&format!(
        "  runbooks   {} loaded, {} failed, from {}\n",
        runbooks.len(),
        reg.errors
            .iter()
            .map(|e| &e.path)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        p.config.runbooks.display()
    ));
    for e in &reg.errors {
        out.push_str(&format!("    error: {e}\n"));
    }
    if stuck > 0 {
        out.push_str(&format!(
            "  recovered  {stuck} interrupted run(s), {retried} queued again\n"
        ));
    }
    let now = Utc::now();
    let mut lines = Vec::new();
    for rb in runbooks.iter().filter(|r| r.enabled) {
        for t in &rb.triggers {
            if let Some(next) = Schedule::of(t).and_then(|s| upcoming(&s, now, 1).pop()) {
                lines.push((
                    next,
                    format!(
                        "    {:<20} {:<34} {}\n",
                        rb.name,
                        t.describe(),
                        crate::output::when(next)
                    ),
                ));
            }
        }
    }
    lines.sort();
    out.push_str(if lines.is_empty() {
        "  schedules  none\n"
    } else {
        "  next fire times:\n"
    });
    const SHOWN: usize = 20;
    let more = lines.len().saturating_sub(SHOWN);
    for (_, l) in lines.into_iter().take(SHOWN) {
        out.push_str(&l);
    }
    if more > 0 {
        out.push_str(&format!(
            "    ... and {more} more (runbookd next lists them all)\n"
        ));
    }
    say(&out);
}

/// Write to stdout; a closed stdout (a pipe whose reader went away) must not
/// take the daemon down.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

async fn reload_on_sighup(tx: mpsc::Sender<()>, stop: CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP");
        return;
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(()) = hup.recv() => { let _ = tx.try_send(()); }
        }
    }
}

async fn reloader(p: Arc<Parts>, mut rx: mpsc::Receiver<()>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(()) = rx.recv() => reload(&p).await,
        }
    }
}

/// Load the runbooks again and schedule what changed. A broken edit keeps the
/// last good version running.
async fn reload(p: &Parts) {
    let candidates = p.loader.read(std::slice::from_ref(&p.config.runbooks));
    let active = p.registry.read().expect("registry lock").active_paths();
    let loaded = candidates.admit(&active);
    let (changes, errors, all) = {
        let mut reg = p.registry.write().expect("registry lock");
        let changes = reg.apply(loaded);
        (changes, reg.errors.clone(), reg.all())
    };
    for e in &errors {
        tracing::error!(error = %e, "runbook not loaded");
    }
    for name in &changes.kept {
        tracing::warn!(runbook = %name, "its file has errors; the last good version keeps running");
    }
    if changes != Changes::default() {
        tracing::info!(added = ?changes.added, changed = ?changes.changed, removed = ?changes.removed, "runbooks reloaded");
    }
    p.scheduler.set_runbooks(all);
    p.dispatcher.pump_all().await;
}

/// The dead-man switch of `expect: { success_within }`: an issue (and a log
/// line) when a runbook has not succeeded in time, resolved once it has.
async fn dead_man(p: &Parts, rb: &crate::runbook::Runbook, overdue: bool, announce: bool) {
    let key = format!("expect:{}", rb.name);
    let within = crate::duration::spec(rb.success_within.unwrap_or_default());
    let now = Utc::now();
    if overdue {
        if announce {
            tracing::error!(runbook = %rb.name, within = %within, "no successful run within the expected time (expect.success_within)");
            let issue = crate::store::IssueOpen {
                runbook: rb.name.clone(),
                key,
                title: format!("{} has not succeeded in {within}", rb.name),
                severity: "high".into(),
                details: Some(format!(
                    "expect.success_within is {within}; see `runbookd runs --runbook {}`",
                    rb.name
                )),
                link: None,
                at: now,
            };
            if let Err(e) = p.store.open_issue(&issue).await {
                tracing::error!(error = %e, "could not open the dead-man issue");
            }
        }
    } else if let Ok(true) = p
        .store
        .resolve_issue(&key, Some("a run succeeded"), now)
        .await
    {
        tracing::info!(runbook = %rb.name, "succeeded again; the dead-man issue is resolved");
    }
}

/// Retention, the dead-man switch, and a periodic look at the queue.
async fn housekeeping(p: Arc<Parts>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut last_prune: Option<chrono::DateTime<Utc>> = None;
    let mut warned: HashMap<String, chrono::DateTime<Utc>> = HashMap::new();
    let started = Utc::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        if last_prune.is_none_or(|t| now - t > chrono::TimeDelta::hours(6)) {
            last_prune = Some(now);
            let cutoff = now
                - chrono::TimeDelta::from_std(p.config.retention)
                    .unwrap_or(chrono::TimeDelta::days(90));
            match p.store.prune(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "pruned runs older than the retention period"),
                Err(e) => tracing::error!(error = %e, "could not prune old runs"),
            }
        }
        let runbooks = p.registry.read().expect("registry lock").all();
        for rb in runbooks.iter().filter(|r| r.enabled) {
            let Some(within) = rb
                .success_within
                .and_then(|d| chrono::TimeDelta::from_std(d).ok())
            else {
                continue;
            };
            let last = p
                .store
                .last_run(&rb.name)
                .await
                .ok()
                .and_then(|l| l.last_success);
            let since = last.unwrap_or(started);
            dead_man(
                &p,
                rb,
                now - since > within,
                warned.get(&rb.name).is_none_or(|w| now - *w > within),
            )
            .await;
            if now - since > within && warned.get(&rb.name).is_none_or(|w| now - *w > within) {
                warned.insert(rb.name.clone(), now);
            }
        }
        p.dispatcher.pump_all().await;
    }
}
