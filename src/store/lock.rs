//! One writing process per database file.
//!
//! The lock is an advisory `flock` on `<database>.lock`, held for the life of
//! the process. The kernel drops it when the process dies, even by `kill -9`,
//! so a crash never leaves a stale lock. The file holds the owner's pid, for
//! the message a second process prints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
    pub path: PathBuf,
}

impl DatabaseLock {
    /// Take the lock of `database`.
    ///
    /// Fails with [`StoreError::Busy`] naming the holder's pid when another
    /// process has it.
    pub fn acquire(database: &Path) -> Result<Self, StoreError> {
        let mut name = database.as_os_str().to_owned();
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
            return Err(StoreError::Busy(format!(
                "the database {} is in use by {who}; stop it, or point this command at another database with --database",
                database.display()
            )));
        }
        file.set_len(0).ok();
        file.seek(SeekFrom::Start(0)).ok();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(DatabaseLock { _file: file, path })
    }
}
