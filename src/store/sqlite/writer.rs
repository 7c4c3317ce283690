//! Group commit: the writes of runs, slots and deliveries go through one
//! writer connection that runs whatever is waiting as one transaction and
//! commits it once, so many small writes share one `fsync`.
//!
//! Each write runs in a savepoint of the batch: one that fails is rolled back
//! alone, with its error, and the others commit. A caller hears back only
//! after the batch is committed (or hears the commit's error), so an answer
//! still means "on disk".

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::store::{Result, StoreError};

/// A write as the batch runs it.
type BoxFuture<'c, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// At most this many writes share one transaction.
const MAX_BATCH: usize = 256;

trait Job: Send {
    /// Run in the batch's savepoint; returns what to tell the caller once
    /// the batch's commit is known.
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Done>;
    /// The batch could not start: tell the caller.
    fn fail(self: Box<Self>, e: StoreError);
}

type Done = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

struct Write<F, T> {
    f: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<F, T> Job for Write<F, T>
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    T: Send + 'static,
{
    fn run<'c>(self: Box<Self>, conn: &'c mut SqliteConnection) -> BoxFuture<'c, Done> {
        Box::pin(async move {
            let Write { f, reply } = *self;
            let result = match conn.begin().await {
                Ok(mut savepoint) => match f(&mut savepoint).await {
                    Ok(v) => savepoint.commit().await.map(|_| v).map_err(Into::into),
                    Err(e) => {
                        let _ = savepoint.rollback().await;
                        Err(e)
                    }
                },
                Err(e) => Err(e.into()),
            };
            Box::new(move |commit: std::result::Result<(), String>| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(why) => Err(StoreError::from(sqlx::Error::Protocol(why))),
                };
                let _ = reply.send(answer);
            }) as Done
        })
    }

    fn fail(self: Box<Self>, e: StoreError) {
        let _ = self.reply.send(Err(e));
    }
}

/// The handle the store writes through; cheap to clone.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl Writer {
    /// Start the writer task on its own connection.
    pub fn start(conn: SqliteConnection) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, rx));
        Writer { jobs }
    }

    /// Run `f` in the next batch; its result, once the batch is committed.
    ///
    /// Fails with `f`'s own error (its writes undone), or with the batch's
    /// when it could not begin or commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Write { f, reply }))
            .map_err(|_| StoreError::Database("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Database("the database writer has stopped".into()))?
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<Box<dyn Job>>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut batch = match conn.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(e) => {
                let why = e.to_string();
                for j in jobs {
                    j.fail(StoreError::from(sqlx::Error::Protocol(why.clone())));
                }
                continue;
            }
        };
        let mut done = Vec::with_capacity(jobs.len());
        for j in jobs {
            done.push(j.run(&mut batch).await);
        }
        let committed = batch.commit().await.map_err(|e| e.to_string());
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = done.len(), "a batch of database writes could not be committed");
        }
        for d in done {
            d(committed.clone());
        }
    }
}
