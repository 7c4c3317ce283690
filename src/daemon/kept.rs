//! What the database remembers of the runbook files when the daemon starts:
//! which file a name two files claim last ran from, and the last version of
//! a file that is broken now. Hot reload keeps a broken file's last good
//! version in memory; at start, that memory is the database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

/// A runbook whose file is broken now runs the version its latest run
/// (from that same file) had, with a warning that says so; the file's errors
/// stay reported. A runbook that never fired, or whose kept text no longer
/// loads (its scripts or settings broke too), stays out, as before.
pub(super) async fn restore_broken(store: &dyn Store, loader: &Loader, loaded: &mut Loaded) {
    let failed = loaded.failed.clone();
    for (path, name) in failed {
        if loaded.runbooks.iter().any(|rb| rb.name == name) {
            continue;
        }
        let Some(v) = last_version(store, &name).await else {
            continue;
        };
        if Path::new(&v.path) != path {
            continue;
        }
        match loader.load_kept(&path, v.yaml) {
            // A webhook path another runbook answers now stays with it (the
            // file may have been refused for claiming it).
            Ok((rb, _)) if rb.name == name && !hooks_taken(&rb, loaded) => {
                let message = format!(
                    "the file has errors; runbook {name} runs the version that last fired (saved {}), kept in the database, until the file is fixed",
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
                    tracing::warn!(runbook = %name, error = %e, "the version kept in the database does not load either");
                }
            }
        }
    }
}

/// Whether a webhook path of `rb` is answered by a runbook already loaded.
fn hooks_taken(rb: &crate::runbook::Runbook, loaded: &Loaded) -> bool {
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
        .any(|other| paths(other).iter().any(|p| mine.contains(p)))
}
