//! Hot reload: the file watch and SIGHUP ask for it, `POST /api/v1/reload`
//! waits for it; a broken edit keeps the last good version running.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Parts;
use crate::http::{Reload, ReloadReport};
use crate::runbook::Changes;

pub(super) fn reload_fn(parts: Arc<Parts>) -> Reload {
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

pub(super) async fn reload_on_sighup(tx: mpsc::Sender<()>, stop: CancellationToken) {
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

pub(super) async fn reloader(p: Arc<Parts>, mut rx: mpsc::Receiver<()>, stop: CancellationToken) {
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
    // The file a runbook runs from keeps its name against a newcomer.
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
    super::kept::save_loaded(p.intake.clone(), all.clone()).await;
    p.scheduler.set_runbooks(all);
    p.dispatcher.pump_all().await;
}
