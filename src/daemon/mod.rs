//! Assembly and lifecycle of `runbookd serve`: open the store, load the
//! runbooks, recover what a previous process left, start the scheduler, the
//! dispatcher, the file watch and housekeeping; on stop, take no new work, let
//! running runs finish for a grace period, then interrupt them.
//!
//! [`serve`] takes a bound listener and a shutdown future, so a test (or an
//! embedding program) starts the daemon in-process.

mod assemble;
mod banner;
mod housekeeping;
mod kept;
mod reload;
mod shared;
mod summary;
mod watch;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::run::{Dispatcher, Intake};
use crate::runbook::{Loader, Registry};
use crate::schedule::SchedulerHandle;
use crate::secrets::Secrets;
use crate::store::Store;

pub use summary::say;

/// After the grace period, interrupted runs get this long to record themselves.
const INTERRUPT_WAIT: Duration = Duration::from_secs(10);

/// What the daemon runs with.
pub struct Options {
    pub config: Config,
    pub secrets: Secrets,
}

/// What the daemon's tasks share.
struct Parts {
    config: Config,
    store: Arc<dyn Store>,
    loader: Loader,
    registry: Arc<RwLock<Registry>>,
    dispatcher: Arc<Dispatcher>,
    intake: Arc<Intake>,
    scheduler: SchedulerHandle,
    /// Cancelled when shutdown begins: no new work is taken from then on.
    closing: CancellationToken,
    /// Cancelled when the grace period ends: runs still going are interrupted.
    interrupt: CancellationToken,
}

/// Run the daemon on `listener` until `shutdown` completes.
///
/// Fails before serving when the database cannot be opened (or another
/// process holds it) or the scheduler cannot start; once serving, problems
/// are logged and the daemon goes on.
pub async fn serve(
    opts: Options,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let daemon = assemble::assemble(opts).await?;
    let (parts, app) = (daemon.parts.clone(), daemon.app.clone());
    let server_stop = CancellationToken::new();
    let limits = parts.config.server;
    let server = {
        let stop = server_stop.clone();
        tokio::spawn(async move {
            crate::http::serve(listener, crate::http::router(app), limits, stop).await
        })
    };
    summary::print(&parts, &addr, daemon.recovered);
    let tasks = assemble::background(daemon);
    parts.dispatcher.pump_all().await;
    shutdown.await;
    stop(&parts).await;
    server_stop.cancel();
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), server).await {
        tracing::error!(error = %e, "the HTTP server stopped with an error");
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    say("stopped\n");
    Ok(())
}

/// Take no new work; let running runs finish for the grace period, then
/// interrupt them (they are queued again at the next start).
async fn stop(p: &Parts) {
    let d = &p.dispatcher;
    let grace = p.config.shutdown_grace;
    tracing::info!(running = d.running(), grace = %crate::duration::spec(grace), "shutting down: taking no new work");
    say(&format!(
        "shutting down: waiting up to {} for {} running run(s)\n",
        crate::duration::spec(grace),
        d.running()
    ));
    p.closing.cancel();
    d.tracker.close();
    if tokio::time::timeout(grace, d.tracker.wait()).await.is_err() {
        tracing::warn!(
            running = d.running(),
            "grace period over: interrupting the runs still going"
        );
        p.interrupt.cancel();
        let _ = tokio::time::timeout(INTERRUPT_WAIT, d.tracker.wait()).await;
    }
}

/// Bind the HTTP listener, refusing a non-loopback address without an API token.
pub async fn bind(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
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
