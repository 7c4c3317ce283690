//! The runbooks the daemon runs: the last good version of each, and the load
//! errors of the files that are broken now.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{LoadError, Loaded, Runbook, Trigger};

#[derive(Default)]
pub struct Registry {
    runbooks: HashMap<String, Arc<Runbook>>,
    /// Which runbook each file gave, to keep a broken file's last good version.
    by_path: HashMap<PathBuf, String>,
    /// Webhook path → (runbook, index of the trigger).
    hooks: HashMap<String, (String, usize)>,
    pub errors: Vec<LoadError>,
    pub warnings: Vec<LoadError>,
    /// Whether a load has happened (for readiness).
    pub loaded: bool,
}

/// What a reload changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Broken files whose runbook keeps running its last good version.
    pub kept: Vec<String>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<Runbook>> {
        self.runbooks.get(name).cloned()
    }

    /// The enabled runbook and trigger that answer a webhook path.
    pub fn webhook(&self, path: &str) -> Option<(Arc<Runbook>, usize)> {
        let (name, idx) = self.hooks.get(path)?;
        self.runbooks
            .get(name)
            .filter(|rb| rb.enabled)
            .map(|rb| (rb.clone(), *idx))
    }

    /// The file each runbook runs from now, by name: it keeps its name on the
    /// next reload (see [`super::Candidates::admit`]).
    pub fn active_paths(&self) -> HashMap<String, PathBuf> {
        self.by_path
            .iter()
            .map(|(path, name)| (name.clone(), path.clone()))
            .collect()
    }

    /// Every runbook, by name.
    pub fn all(&self) -> Vec<Arc<Runbook>> {
        let mut v: Vec<_> = self.runbooks.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Take in a new load of the runbooks directory.
    ///
    /// A good file replaces its runbook; a broken file keeps the last good
    /// version of the runbook it gave before; a file that is gone takes its
    /// runbook away (its history stays in the database).
    pub fn apply(&mut self, loaded: Loaded) -> Changes {
        let mut changes = Changes::default();
        let mut runbooks = HashMap::new();
        let mut by_path = HashMap::new();
        for rb in loaded.runbooks {
            match self.runbooks.get(&rb.name) {
                None => changes.added.push(rb.name.clone()),
                Some(old) if old.version.hash != rb.version.hash => {
                    changes.changed.push(rb.name.clone())
                }
                Some(_) => {}
            }
            by_path.insert(rb.path.clone(), rb.name.clone());
            runbooks.insert(rb.name.clone(), rb);
        }
        for (path, _) in &loaded.failed {
            if let Some(name) = self.by_path.get(path)
                && let Some(old) = self.runbooks.get(name)
                && !runbooks.contains_key(name)
            {
                changes.kept.push(name.clone());
                by_path.insert(path.clone(), name.clone());
                runbooks.insert(name.clone(), old.clone());
            }
        }
        for name in self.runbooks.keys() {
            if !runbooks.contains_key(name) {
                changes.removed.push(name.clone());
            }
        }
        for list in [
            &mut changes.added,
            &mut changes.changed,
            &mut changes.removed,
            &mut changes.kept,
        ] {
            list.sort();
        }
        self.hooks = runbooks
            .values()
            .flat_map(|rb| {
                rb.triggers.iter().enumerate().filter_map(|(i, t)| match t {
                    Trigger::Webhook(w) => Some((w.path.clone(), (rb.name.clone(), i))),
                    _ => None,
                })
            })
            .collect();
        self.runbooks = runbooks;
        self.by_path = by_path;
        self.loaded = true;
        self.errors = loaded.errors;
        self.warnings = loaded.warnings;
        changes
    }
}
