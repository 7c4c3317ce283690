//! Watching `runbooks/` and `scripts/` for edits. Events are debounced, so a
//! file being written is read once it has been quiet for a moment, and any
//! event means "reload everything" (editors save by rename, create, delete).

use std::path::PathBuf;
use std::time::Duration;

use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

/// How long a directory must be quiet before it is read again.
pub const QUIET: Duration = Duration::from_millis(500);

/// Keeps the watch alive while held.
pub struct Watch {
    _debouncer: Debouncer<notify_debouncer_full::notify::RecommendedWatcher, RecommendedCache>,
}

/// Watch `dirs` (those that exist); each quiet burst of events sends one
/// reload request on `tx` (a full channel means a reload is already pending).
///
/// Fails when the system's file watching cannot start.
pub fn start(
    dirs: &[PathBuf],
    tx: mpsc::Sender<()>,
) -> notify_debouncer_full::notify::Result<Watch> {
    let mut debouncer = new_debouncer(QUIET, None, move |res: DebounceEventResult| match res {
        // Reading a file (our own reload does) is no change: only writes,
        // creations, removals and renames are.
        Ok(events)
            if events
                .iter()
                .any(|e| !matches!(e.event.kind, EventKind::Access(_) | EventKind::Other)) =>
        {
            let _ = tx.try_send(());
        }
        Ok(_) => {}
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "file watching reported an error");
            }
            let _ = tx.try_send(());
        }
    })?;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        debouncer.watch(dir, RecursiveMode::Recursive)?;
    }
    Ok(Watch {
        _debouncer: debouncer,
    })
}
