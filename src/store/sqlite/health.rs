//! Whether writes to the database file succeed now: what `/readyz` reports
//! as `writes`.
//!
//! A failed commit (a full disk, an I/O error) makes the store unwritable
//! until a commit succeeds again (`/readyz` tries a tiny one for failures
//! other than a full disk), or, for a full disk, until space was freed on
//! the filesystem holding the database since the failure. This matters: a
//! daemon that says it is not ready receives no webhooks, so it may have
//! nothing to commit that would prove it writes again.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Free space grown by this much since the failure counts as freed.
const FREED: u64 = 1 << 20;

#[derive(Debug)]
pub(super) struct WriteHealth {
    /// The directory holding the database (and its journal).
    dir: PathBuf,
    failed: Mutex<Option<Failure>>,
}

#[derive(Debug)]
struct Failure {
    reason: String,
    /// Free bytes on the filesystem when the commit failed.
    free_then: Option<u64>,
}

impl WriteHealth {
    pub fn new(database: &Path) -> Self {
        let dir = database
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        WriteHealth {
            dir,
            failed: Mutex::new(None),
        }
    }

    /// A commit failed for `reason`.
    pub fn failed(&self, reason: &str) {
        let free_then = free_bytes(&self.dir);
        *self.failed.lock().expect("health lock") = Some(Failure {
            reason: reason.to_string(),
            free_then,
        });
    }

    /// A commit succeeded.
    pub fn succeeded(&self) {
        *self.failed.lock().expect("health lock") = None;
    }

    /// `Err(reason of the last failed commit)` while writes fail.
    pub fn check(&self) -> Result<(), String> {
        let mut failed = self.failed.lock().expect("health lock");
        let Some(f) = failed.as_ref() else {
            return Ok(());
        };
        let freed = match (f.free_then, free_bytes(&self.dir)) {
            (Some(then), Some(now)) => now >= then.saturating_add(FREED),
            _ => false,
        };
        if freed {
            *failed = None;
            return Ok(());
        }
        Err(f.reason.clone())
    }
}

/// Bytes an unprivileged process may still write on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a writable statvfs.
    let ok = unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0;
    ok.then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_commit_holds_until_one_succeeds() {
        let h = WriteHealth::new(Path::new("/nonexistent-dir/runbookd.db"));
        assert_eq!(h.check(), Ok(()));
        h.failed("database or disk is full");
        assert_eq!(h.check(), Err("database or disk is full".into()));
        h.succeeded();
        assert_eq!(h.check(), Ok(()));
    }
}
