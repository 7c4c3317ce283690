//! One writing process per database file, whatever name it is reached by.
//!
//! The lock is an advisory `flock` on `<database>.lock`, held for the life of
//! the process. The kernel drops it when the process dies, even by `kill -9`,
//! so a crash never leaves a stale lock. The file holds the owner's pid, for
//! the message a second process prints.
//!
//! The lock is not taken on the database file itself: SQLite's own locks on
//! it are POSIX locks, which the kernel drops when the process closes *any*
//! descriptor of that file. Instead the name is made the file's identity:
//! symlinks are resolved ([`identity`]), and a file with a second hard link is
//! refused, since SQLite keys its journal (`-wal`, `-shm`) on the name too, and
//! two names would be two databases writing one file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// The one name of the database file at `typed`: symlinks resolved (also in
/// its directory, when the file does not exist yet).
///
/// Fails with [`StoreError::Open`] when the file has more than one hard link,
/// or its directory cannot be resolved.
pub fn identity(typed: &Path) -> Result<PathBuf, StoreError> {
    let fail = |cause: String| StoreError::Open {
        path: typed.display().to_string(),
        cause,
    };
    let resolved = match std::fs::canonicalize(typed) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A link to a file not created yet would lock the link's name
            // while SQLite writes the target's.
            if let Ok(target) = std::fs::read_link(typed) {
                return Err(fail(format!(
                    "it is a symlink to {}, which does not exist; point --database at the real path, or create the file first",
                    target.display()
                )));
            }
            let dir = match typed.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let name = typed
                .file_name()
                .ok_or_else(|| fail("the path names no file".into()))?;
            std::fs::canonicalize(dir)
                .map_err(|e| fail(format!("its directory {}: {e}", dir.display())))?
                .join(name)
        }
        Err(e) => return Err(fail(e.to_string())),
    };
    if let Ok(meta) = std::fs::metadata(&resolved) {
        use std::os::unix::fs::MetadataExt;
        if meta.is_file() && meta.nlink() > 1 {
            return Err(fail(format!(
                "the file has {} hard links; SQLite names its journal after the path, so each name would be a database of its own writing the same file. Keep one name (remove the other links), or use a symlink",
                meta.nlink()
            )));
        }
    }
    Ok(resolved)
}

#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
    pub path: PathBuf,
}

impl DatabaseLock {
    /// Take the lock of the database file `resolved` (its [`identity`]);
    /// `typed` is the name messages show.
    ///
    /// Fails with [`StoreError::Busy`] naming the holder's pid when another
    /// process has it.
    pub fn acquire(resolved: &Path, typed: &Path) -> Result<Self, StoreError> {
        let mut name = resolved.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                cause: e.to_string(),
            })?;
        if file.try_lock().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another runbookd (pid {holder})")
            };
            return Err(StoreError::Busy {
                database: typed.display().to_string(),
                holder: who,
            });
        }
        file.set_len(0).ok();
        file.seek(SeekFrom::Start(0)).ok();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(DatabaseLock { _file: file, path })
    }
}
