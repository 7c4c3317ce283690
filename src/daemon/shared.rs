//! When several daemons share the store (PostgreSQL), every few seconds each
//! one takes back the runs whose owner's lease expired (a daemon that died,
//! or was paused past its lease), queues them again, and looks at the whole
//! queue: another daemon may have queued runs, or freed a runbook that a
//! queued run waits for. It also measures the database's clock again
//! ([`crate::clock`]), which decides due-ness and lease expiry, and tells the
//! others which runbook versions it has loaded, so the listings can warn when
//! daemons disagree. With SQLite this process is the only writer, and
//! recovery at start is enough.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Parts;

/// How often: well within a lease (30 s), so a dead daemon's runs are taken
/// back within about a lease and this long.
const EVERY: Duration = Duration::from_secs(5);

pub(super) async fn run(p: Arc<Parts>, stop: CancellationToken) {
    if p.store.sole_writer() {
        return;
    }
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let registry = p.registry.clone();
    let lookup = move |name: &str| registry.read().expect("registry lock").get(name);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        crate::clock::align(p.store.as_ref()).await;
        let loaded: Vec<(String, String)> = (p.registry.read().expect("registry lock").all())
            .iter()
            .map(|rb| (rb.name.clone(), rb.version.hash.clone()))
            .collect();
        let owner = p.dispatcher.executor().owner();
        if let Err(e) = p.store.publish_versions(owner, &loaded).await {
            tracing::warn!(error = %e, "could not tell the other daemons which runbook versions this one runs");
        }
        if let Err(e) = crate::run::recover(p.store.as_ref(), &lookup).await {
            tracing::error!(error = %e, "could not look for runs whose daemon stopped");
        }
        p.dispatcher.pump_all().await;
    }
}
