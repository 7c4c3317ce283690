//! Whether the files a runbook is made of may be trusted to run: a runbook
//! listed in the runbooks directory stays inside it, and no file or directory
//! it is read from may be changed by anyone but the daemon's user (or root).
//!
//! A runbook runs with the daemon's secrets, so a file another user can write
//! is a way to them. Like cron and ssh, the loader refuses such files unless
//! the operator says `--allow-insecure-permissions`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Refuse `file`, found by listing `dir`, when it leads outside `dir` (a symlink).
pub(super) fn inside(dir: &Path, file: &Path) -> Result<(), String> {
    let (Ok(dir_real), Ok(file_real)) = (dir.canonicalize(), file.canonicalize()) else {
        return Ok(()); // reading it reports the real problem
    };
    if file_real.starts_with(&dir_real) {
        return Ok(());
    }
    Err(format!(
        "{} points outside the runbooks directory (to {})",
        file.display(),
        file_real.display()
    ))
}

/// Refuse a file or directory that group or others may write, or that another
/// user than the daemon's (or root) owns. Returns the message and its hint.
pub(super) fn owned_safely(path: &Path) -> Result<(), (String, String)> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // reading it reports the real problem
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err((
            format!(
                "{} is writable by group or others (mode {mode:04o}); runbookd refuses it",
                path.display()
            ),
            format!(
                "chmod go-w {}, or start with --allow-insecure-permissions",
                path.display()
            ),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err((
            format!(
                "{} is owned by uid {}, not by the daemon's user (uid {me}) or root; runbookd refuses it",
                path.display(),
                meta.uid()
            ),
            format!("chown it to uid {me}, or start with --allow-insecure-permissions"),
        ));
    }
    Ok(())
}
