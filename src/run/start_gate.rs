//! The gate between a run and the outside while its attempt's start is
//! written. A store may answer a start before it is made (SQLite's early
//! starts, `RunStore::start_attempt_early`): the run's fenced writes wait
//! until it is made, and whatever leaves the process for the run (an HTTP
//! call), and the run's end, until it is on disk.

use crate::store::{Pending, Starting, StoreError};

enum Start {
    Asked(Starting),
    Made(Pending),
    OnDisk,
    Lost(StoreError),
}

pub struct StartGate(tokio::sync::Mutex<Start>);

impl StartGate {
    /// A gate with nothing to wait for (a start written before it answered).
    pub fn open() -> Self {
        StartGate(tokio::sync::Mutex::new(Start::OnDisk))
    }

    /// The start was asked for and may not be made, or on disk, yet.
    pub fn set(&self, starting: Starting) {
        *self.0.try_lock().expect("set before the attempt runs") = Start::Asked(starting);
    }

    /// Returns once the start is made. Fails as [`StartGate::started`] does.
    pub async fn made(&self) -> Result<(), StoreError> {
        let mut start = self.0.lock().await;
        if let Start::Asked(_) = &*start {
            let Start::Asked(starting) = std::mem::replace(&mut *start, Start::OnDisk) else {
                unreachable!("matched above")
            };
            *start = match starting.made().await {
                Ok(on_disk) => Start::Made(on_disk),
                Err(e) => Start::Lost(e),
            };
        }
        lost(&start)
    }

    /// Returns once the start is on disk. Fails when it could not be
    /// written (then nothing the run wrote is kept, and it stays queued),
    /// and with `Conflict` when the run was not startable after all.
    pub async fn started(&self) -> Result<(), StoreError> {
        self.made().await?;
        let mut start = self.0.lock().await;
        if let Start::Made(_) = &*start {
            let Start::Made(on_disk) = std::mem::replace(&mut *start, Start::OnDisk) else {
                unreachable!("matched above")
            };
            if let Err(e) = on_disk.wait().await {
                *start = Start::Lost(e);
            }
        }
        lost(&start)
    }
}

fn lost(start: &Start) -> Result<(), StoreError> {
    match start {
        Start::Lost(e) => Err(e.clone()),
        _ => Ok(()),
    }
}
