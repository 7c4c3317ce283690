//! Which file a runbook name (and a webhook path) belongs to when several
//! files claim it.
//!
//! The invariant: a runbook that is active stays active. A second file that
//! takes the name of an active runbook (a copy left beside it, a rename in
//! progress) is the error, with both paths, and never takes the runbook over,
//! whether the daemon is starting (the active file is the one of the latest
//! run) or reloading (the one the registry runs). With no active file, the
//! first by path wins.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::load::{FileResult, at};
use super::{LoadError, Loaded, Trigger};

/// Every runbook file read and validated, before names are given out.
#[derive(Default)]
pub struct Candidates {
    pub(super) files: Vec<(PathBuf, FileResult)>,
    pub(super) errors: Vec<LoadError>,
    /// Errors reported after the files' own (settings naming no runbook).
    pub(super) trailing: Vec<LoadError>,
}

impl Candidates {
    /// Names claimed by more than one file (whether the files are good or broken).
    pub fn contested(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut contested: Vec<String> = self
            .files
            .iter()
            .filter_map(|(_, r)| claimed_name(r))
            .filter(|n| !seen.insert(n.to_string()))
            .map(str::to_string)
            .collect();
        contested.sort();
        contested.dedup();
        contested
    }

    /// Give each name and webhook path to one file. `active` maps a runbook
    /// name to the file it runs from now; that file keeps it, even while it
    /// is broken (its last good version keeps running).
    pub fn admit(self, active: &HashMap<String, PathBuf>) -> Loaded {
        let mut out = Loaded {
            errors: self.errors,
            ..Loaded::default()
        };
        let present: Vec<PathBuf> = self.files.iter().map(|(p, _)| p.clone()).collect();
        let holder = |name: &str| {
            active
                .get(name)
                .and_then(|a| present.iter().find(|p| same_file(p, a)))
        };
        let trailing = self.trailing;
        let mut files = self.files;
        // Active files first, so they win names and webhook paths alike.
        files.sort_by_key(|(p, r)| {
            let is_active = claimed_name(r).and_then(holder).is_some_and(|h| h == p);
            (!is_active, p.clone())
        });
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        let mut hooks: HashMap<String, String> = HashMap::new();
        for (file, result) in files {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (rb, warnings) = match result {
                Ok(good) => good,
                Err((name, errors, warnings)) => {
                    out.errors.extend(errors);
                    out.warnings.extend(warnings);
                    out.failed.push((file, name.unwrap_or(stem)));
                    continue;
                }
            };
            out.warnings.extend(warnings);
            let owner = names
                .get(&rb.name)
                .cloned()
                .or_else(|| holder(&rb.name).filter(|h| **h != file).cloned());
            if let Some(owner) = owner {
                out.errors.push(at(
                    &file,
                    1,
                    1,
                    format!(
                        "runbook name \"{}\" is already used by {}; {} is not loaded",
                        rb.name,
                        owner.display(),
                        file.display()
                    ),
                    Some("give one of them another `name:`".into()),
                ));
                out.failed.push((file, rb.name.clone()));
                continue;
            }
            if let Some((path, other)) = rb.triggers.iter().find_map(|t| match t {
                Trigger::Webhook(w) => hooks.get(&w.path).map(|o| (w.path.clone(), o.clone())),
                _ => None,
            }) {
                out.errors.push(at(
                    &file,
                    1,
                    1,
                    format!("webhook path {path} is already used by runbook {other}"),
                    Some("set another `path:` on the webhook".into()),
                ));
                out.failed.push((file, rb.name.clone()));
                continue;
            }
            for t in &rb.triggers {
                if let Trigger::Webhook(w) = t {
                    hooks.insert(w.path.clone(), rb.name.clone());
                }
            }
            names.insert(rb.name.clone(), file);
            out.runbooks.push(Arc::new(rb));
        }
        out.errors.extend(trailing);
        out
    }
}

fn claimed_name(r: &FileResult) -> Option<&str> {
    match r {
        Ok((rb, _)) => Some(&rb.name),
        Err((name, ..)) => name.as_deref(),
    }
}

/// The same file, however its path was written (the database keeps the path
/// a past start used).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}
