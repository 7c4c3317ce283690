//! Group commit: every write of the process goes through one connection,
//! and the writes that arrive while a commit is on disk share the next one.
//!
//! A write takes a [`Lease`] on the connection: a savepoint inside the open
//! batch transaction. [`Lease::commit`] releases the savepoint and waits
//! until the batch is committed, so an answer still means "on disk". A lease
//! dropped without commit (an error on the way) has its savepoint rolled
//! back before the connection is used again, so its writes never commit and
//! the batch's other writes are unaffected. [`Lease::release`] gives the
//! connection up at once and returns a [`Durable`] that tells when its
//! writes are on disk, for the store's own tasks that write for many
//! callers and answer each later (`recorder.rs`).
//!
//! The committer task commits whenever released writes wait. Leases queue
//! on a fair lock, so the committer waits behind the writes that were
//! already queued: under load a batch holds many writes (one fsync), while
//! a lone write waits only for its own commit.

use std::sync::Arc;

use sqlx::{Executor, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard, Notify, watch};

use crate::store::{Result, StoreError};

/// The result of a batch's commit, once known.
type Outcome = Option<std::result::Result<(), String>>;

struct Slot {
    conn: SqliteConnection,
    /// A batch transaction is open.
    open: bool,
    /// Leases released into the open batch.
    released: usize,
    /// A lease ended without commit (or was cut off while taking or
    /// releasing its savepoint): the savepoint may still be open.
    abandoned: bool,
    /// A `BEGIN` was cut off: whether it ran is unknown.
    beginning: bool,
    /// Told the open batch's outcome.
    batch: watch::Sender<Outcome>,
    /// Told whether commits succeed.
    health: Arc<super::health::WriteHealth>,
}

struct Shared {
    slot: Mutex<Slot>,
    /// Poked when a lease ends; the committer then commits what waits.
    dirty: Notify,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    committer: tokio::task::JoinHandle<()>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.committer.abort();
    }
}

/// Exclusive use of the writer connection, inside a savepoint (or, for a
/// single statement, none: SQLite undoes a failed statement by itself).
pub(super) struct Lease<'a> {
    guard: Option<MutexGuard<'a, Slot>>,
    shared: &'a Shared,
    savepoint: bool,
}

impl Writer {
    pub fn start(conn: SqliteConnection, health: Arc<super::health::WriteHealth>) -> Self {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                conn,
                open: false,
                released: 0,
                abandoned: false,
                beginning: false,
                batch: watch::channel(None).0,
                health,
            }),
            dirty: Notify::new(),
        });
        let committer = tokio::spawn(commit_loop(shared.clone()));
        Writer { shared, committer }
    }

    /// Wait for the connection. With `savepoint`, the lease's writes are
    /// undone unless it is committed; without, the lease must run one
    /// statement and commit when it succeeds (a statement that fails undoes
    /// itself; one that succeeded stays in the batch).
    pub async fn lease(&self, savepoint: bool) -> Result<Lease<'_>> {
        lease_on(&self.shared, savepoint).await
    }

    /// A handle on the writer for a task of the store's own.
    pub fn handle(&self) -> Handle {
        Handle(self.shared.clone())
    }
}

/// The writer, shared with a task that writes on the store's behalf
/// (`recorder.rs`).
#[derive(Clone)]
pub(super) struct Handle(Arc<Shared>);

impl Handle {
    /// As [`Writer::lease`].
    pub async fn lease(&self, savepoint: bool) -> Result<Lease<'_>> {
        lease_on(&self.0, savepoint).await
    }
}

async fn lease_on(shared: &Shared, savepoint: bool) -> Result<Lease<'_>> {
    let mut slot = shared.slot.lock().await;
    slot.settle().await;
    // The flags are set before each await, so a caller that gives up
    // halfway leaves the next user a connection it can put right.
    if !slot.open {
        slot.beginning = true;
        slot.conn.execute("BEGIN IMMEDIATE").await?;
        slot.beginning = false;
        slot.open = true;
    }
    if savepoint {
        slot.abandoned = true;
        if let Err(e) = slot.conn.execute("SAVEPOINT lease").await {
            slot.abandoned = false;
            // Let the committer end the batch if nothing else is in it.
            drop(slot);
            shared.dirty.notify_one();
            return Err(e.into());
        }
        slot.abandoned = false;
    }
    Ok(Lease {
        guard: Some(slot),
        shared,
        savepoint,
    })
}

/// What a write is told once the writer (or a task of the store writing
/// through it) is gone.
pub(super) fn stopped() -> StoreError {
    StoreError::Database("the database writer has stopped".into())
}

/// Writes released into a batch, not yet known to be on disk.
#[derive(Clone)]
pub(super) struct Durable(watch::Receiver<Outcome>);

impl Durable {
    /// Returns once the writes are committed to disk; fails when their
    /// batch could not be committed.
    pub async fn wait(mut self) -> Result<()> {
        let done = self
            .0
            .wait_for(Option::is_some)
            .await
            .map_err(|_| stopped())?
            .clone();
        match done {
            Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(StoreError::from_database_text(why)),
            None => unreachable!("waited for an outcome"),
        }
    }
}

impl Lease<'_> {
    /// Keep the lease's writes; returns once they are committed to disk.
    pub async fn commit(self) -> Result<()> {
        self.release().await?.wait().await
    }

    /// Keep the lease's writes and give up the connection at once; the
    /// returned [`Durable`] tells when they are on disk.
    pub async fn release(mut self) -> Result<Durable> {
        let mut slot = self.guard.take().expect("a lease is committed once");
        if self.savepoint {
            slot.abandoned = true;
            if let Err(e) = slot.conn.execute("RELEASE lease").await {
                drop(slot);
                self.shared.dirty.notify_one();
                return Err(e.into());
            }
            slot.abandoned = false;
        }
        slot.released += 1;
        let outcome = slot.batch.subscribe();
        drop(slot);
        self.shared.dirty.notify_one();
        Ok(Durable(outcome))
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.guard.as_ref().expect("a live lease").conn
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.guard.as_mut().expect("a live lease").conn
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(mut slot) = self.guard.take() {
            if self.savepoint {
                slot.abandoned = true;
            } else {
                // Its one statement either failed (and undid itself) or stays.
                slot.released += 1;
            }
            drop(slot);
            self.shared.dirty.notify_one();
        }
    }
}

impl Slot {
    /// Undo an abandoned lease's savepoint. Should that fail, the whole
    /// batch is rolled back and its waiting writers are told so.
    async fn settle(&mut self) {
        if self.beginning {
            // Nothing was released into a batch that was only beginning.
            self.beginning = false;
            let _ = self.conn.execute("ROLLBACK").await;
            self.open = false;
        }
        if !self.abandoned {
            return;
        }
        self.abandoned = false;
        match sqlx::raw_sql("ROLLBACK TO lease; RELEASE lease")
            .execute(&mut self.conn)
            .await
        {
            Ok(_) => {}
            // Cut off before the savepoint was taken, or after it was released.
            Err(e) if e.to_string().contains("no such savepoint") => {}
            Err(e) => {
                tracing::error!(error = %e, "could not undo a failed database write; its batch is rolled back");
                let _ = self.conn.execute("ROLLBACK").await;
                self.end(Err(format!("the batch was rolled back: {e}")));
            }
        }
    }

    /// Commit (or, with nothing in it, roll back) the open batch.
    async fn finish(&mut self) {
        self.settle().await;
        if !self.open {
            return;
        }
        if self.released == 0 {
            let _ = self.conn.execute("ROLLBACK").await;
            self.end(Ok(()));
            return;
        }
        let committed = self.conn.execute("COMMIT").await.map(|_| ());
        match &committed {
            Ok(()) => self.health.succeeded(),
            Err(e) => {
                tracing::error!(error = %e, writes = self.released, "a batch of database writes could not be committed");
                self.health.failed(&e.to_string());
                // A failed COMMIT can leave the transaction open.
                let _ = self.conn.execute("ROLLBACK").await;
            }
        }
        self.end(committed.map_err(|e| e.to_string()));
    }

    fn end(&mut self, outcome: std::result::Result<(), String>) {
        self.open = false;
        self.released = 0;
        let batch = std::mem::replace(&mut self.batch, watch::channel(None).0);
        batch.send_replace(Some(outcome));
    }
}

async fn commit_loop(shared: Arc<Shared>) {
    loop {
        shared.dirty.notified().await;
        shared.slot.lock().await.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{ConnectOptions, Connection};

    async fn setup() -> (
        tempfile::TempDir,
        Writer,
        sqlx::sqlite::SqliteConnectOptions,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("w.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let mut conn = opts.connect().await.unwrap();
        conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (-1)")
            .await
            .unwrap();
        let health = Arc::new(super::super::health::WriteHealth::new(
            &dir.path().join("w.db"),
        ));
        (dir, Writer::start(conn, health), opts)
    }

    async fn rows(opts: &sqlx::sqlite::SqliteConnectOptions) -> Vec<i64> {
        // A connection of its own: what it reads is what was committed.
        let mut c = opts.connect().await.unwrap();
        let v = sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        v
    }

    async fn insert(w: &Writer, xs: &[i64]) -> Result<()> {
        let mut lease = w.lease(true).await?;
        for x in xs {
            sqlx::query("INSERT INTO t VALUES (?)")
                .bind(x)
                .execute(&mut *lease)
                .await?;
        }
        lease.commit().await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_batches_and_a_failed_one_leaves_no_trace() {
        let (_dir, w, opts) = setup().await;
        let w = Arc::new(w);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200i64 {
            let w = w.clone();
            // Every tenth write inserts its own row, then one that was there
            // before: it fails, and its first row must not be committed either.
            tasks.spawn(async move {
                let xs = if i % 10 == 9 {
                    vec![1000 + i, -1]
                } else {
                    vec![i]
                };
                (i, insert(&w, &xs).await)
            });
        }
        let mut failed = 0;
        while let Some(joined) = tasks.join_next().await {
            let (i, result) = joined.unwrap();
            match result {
                Ok(()) => assert_ne!(i % 10, 9),
                Err(e) => {
                    assert_eq!(i % 10, 9, "write {i} failed: {e}");
                    assert!(e.to_string().contains("UNIQUE"), "{e}");
                    failed += 1;
                }
            }
        }
        assert_eq!(failed, 20);
        let want: Vec<i64> = (-1..200).filter(|i| i % 10 != 9).collect();
        assert_eq!(rows(&opts).await, want);
    }

    // One thread: the next write takes the connection before the committer
    // can, so it is the one that must undo the abandoned savepoint.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_given_up_halfway_is_undone_and_the_writer_goes_on() {
        let (_dir, w, opts) = setup().await;
        let w = Arc::new(w);
        let mut lease = w.lease(true).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (6)")
            .execute(&mut *lease)
            .await
            .unwrap();
        drop(lease);
        insert(&w, &[5]).await.unwrap();
        assert_eq!(rows(&opts).await, vec![-1, 5]);

        // A task cut off while it holds a lease.
        let (held, hold) = tokio::sync::oneshot::channel::<()>();
        let abandoned = {
            let w = w.clone();
            tokio::spawn(async move {
                let mut lease = w.lease(true).await.unwrap();
                sqlx::query("INSERT INTO t VALUES (7)")
                    .execute(&mut *lease)
                    .await
                    .unwrap();
                let _ = held.send(());
                std::future::pending::<()>().await;
            })
        };
        hold.await.unwrap();
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        insert(&w, &[8]).await.unwrap();
        assert_eq!(rows(&opts).await, vec![-1, 5, 8]);
    }
}
