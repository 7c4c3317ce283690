//! What the database remembers of the runbook files when the daemon starts:
//! which file a name two files claim last ran from, and the last version of
//! a file that is broken now. Hot reload keeps a broken file's last good
//! version in memory; at start, that memory is the database.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::runbook::{LoadError, Loaded, Loader};
use crate::store::{RunFilter, Store, VersionRow};

/// The version of `name`'s latest run, when there is one.
async fn last_version(store: &dyn Store, name: &str) -> Option<VersionRow> {
    let filter = RunFilter {
        runbook: Some(name.to_string()),
        limit: 1,
        ..Default::default()
    };
    let run = store.list_runs(&filter).await.ok()?.into_iter().next()?;
    store.version(&run.version_hash).await.ok()?
}

/// The file each of these runbooks' latest run came from.
pub(super) async fn last_run_paths(
    store: &dyn Store,
    names: &[String],
) -> HashMap<String, PathBuf> {
    let mut active = HashMap::new();
    for name in names {
        if let Some(v) = last_version(store, name).await {
            active.insert(name.clone(), v.path.into());
        }
    }
    active
}

/// A runbook whose file is broken now runs the version of that file the
/// daemon loaded last (kept in the database), with a warning that says so;
/// the file's errors stay reported. A file never loaded before, or whose
/// kept text no longer loads (its scripts or settings broke too), stays
/// out, as before; so does one whose name or webhook path another runbook
/// has taken meanwhile.
pub(super) async fn restore_broken(store: &dyn Store, loader: &Loader, loaded: &mut Loaded) {
    let failed = loaded.failed.clone();
    for (path, _) in failed {
        let Ok(Some(v)) = store.latest_version_from(&path.display().to_string()).await else {
            continue;
        };
        match loader.load_kept(&path, v.yaml) {
            Ok((rb, _)) if !taken(&rb, loaded) => {
                let name = rb.name.clone();
                let message = format!(
                    "the file has errors; runbook {name} runs the version last loaded from it (saved {}), kept in the database, until the file is fixed",
                    v.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
                tracing::warn!(runbook = %name, path = %path.display(), "{message}");
                loaded.warnings.push(LoadError {
                    path: path.clone(),
                    line: 1,
                    col: 1,
                    message,
                    hint: None,
                });
                loaded.runbooks.push(Arc::new(rb));
            }
            Ok(_) => {}
            Err((_, errors, _)) => {
                for e in errors {
                    tracing::warn!(path = %path.display(), error = %e, "the version kept in the database does not load either");
                }
            }
        }
    }
}

/// Whether `rb`'s name, or one of its webhook paths, belongs to a runbook
/// already loaded (the file may have been refused for claiming it).
fn taken(rb: &crate::runbook::Runbook, loaded: &Loaded) -> bool {
    let paths = |r: &crate::runbook::Runbook| -> Vec<String> {
        r.triggers
            .iter()
            .filter_map(|t| match t {
                crate::runbook::Trigger::Webhook(w) => Some(w.path.clone()),
                _ => None,
            })
            .collect()
    };
    let mine = paths(rb);
    loaded
        .runbooks
        .iter()
        .any(|other| other.name == rb.name || paths(other).iter().any(|p| mine.contains(p)))
}

/// Keep the text of every runbook version loaded, so a file broken at the
/// next start can run the version loaded last ([`restore_broken`]), also
/// one that never fired (an edit that disabled it, say). All at once, so
/// the writes share commits; a version already kept is not written again.
pub(super) async fn save_loaded(
    intake: Arc<crate::run::Intake>,
    runbooks: Vec<Arc<crate::runbook::Runbook>>,
) {
    let mut saves = tokio::task::JoinSet::new();
    for rb in runbooks {
        let intake = intake.clone();
        saves.spawn(async move {
            if let Err(e) = intake.ensure_version(&rb).await {
                tracing::warn!(runbook = %rb.name, error = %e, "could not keep the loaded version in the database");
            }
        });
    }
    while saves.join_next().await.is_some() {}
}
