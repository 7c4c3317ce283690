//! The clock for the decisions several daemons must agree on: when a
//! schedule slot is due, and when a run's lease expires. With SQLite it is
//! this host's clock. With PostgreSQL it is the database server's: each
//! daemon measures how far its own clock is from the server's (at start,
//! then every few seconds) and corrects by that, so a host whose clock runs
//! minutes ahead neither fires slots early nor takes back runs whose daemon
//! is alive.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::Store;

/// The server's clock minus this host's, in milliseconds.
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// A correction smaller than this is not worth a log line.
const NOTEWORTHY_MS: i64 = 1_000;

/// Now, by the clock that decides.
pub fn now() -> DateTime<Utc> {
    Utc::now() + TimeDelta::milliseconds(OFFSET_MS.load(Ordering::Relaxed))
}

/// Measure the store's clock, when it has one that decides, and correct by
/// it. A store that cannot answer leaves the last correction in place.
pub async fn align(store: &dyn Store) {
    let offset = match store.clock_offset().await {
        Ok(Some(offset)) => offset.num_milliseconds(),
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the database's clock");
            return;
        }
    };
    let before = OFFSET_MS.swap(offset, Ordering::Relaxed);
    if (offset - before).abs() >= NOTEWORTHY_MS {
        tracing::info!(
            offset_ms = offset,
            "this host's clock differs from the database's; schedules and leases follow the database's"
        );
    }
}
