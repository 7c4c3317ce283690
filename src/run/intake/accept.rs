//! Webhook deliveries committed in batches (group commit): requests queue
//! their delivery, one task gathers whatever has arrived into a batch and
//! commits it in one transaction, then answers each, so "202" always means
//! "on disk". With one writer (SQLite) one batch is in flight at a time;
//! with a shared database (PostgreSQL), whose server takes many
//! transactions at once, a few are.

use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot};

use super::Intake;
use crate::runbook::Runbook;
use crate::store::{Accepted, Delivery, StoreError};

/// At most this many deliveries share one commit.
const MAX_BATCH: usize = 256;

/// Batches in flight at once on a shared database.
pub(super) const SHARED_IN_FLIGHT: usize = 4;

struct Job {
    delivery: Delivery,
    /// Whose delivery it is: `replace` acts on its runs.
    runbook: Arc<Runbook>,
    reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

pub(super) struct Acceptor {
    tx: mpsc::Sender<Job>,
}

impl Acceptor {
    pub(super) fn start(intake: Weak<Intake>, in_flight: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // While every slot is busy, the next batch keeps gathering.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let Some(intake) = intake.upgrade() else {
                    return;
                };
                tokio::spawn(async move {
                    commit(&intake, batch).await;
                    drop(slot);
                    intake.pump().await;
                });
            }
        });
        Acceptor { tx }
    }

    pub(super) async fn accept(
        &self,
        runbook: Arc<Runbook>,
        delivery: Delivery,
    ) -> Result<Accepted, StoreError> {
        let stopped = || StoreError::Database("the webhook acceptor stopped".into());
        let (reply, rx) = oneshot::channel();
        let job = Job {
            delivery,
            runbook,
            reply,
        };
        self.tx.send(job).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Commit one batch and answer each request; `replace` acts on each new run.
async fn commit(intake: &Intake, batch: Vec<Job>) {
    let mut deliveries = Vec::with_capacity(batch.len());
    let mut waiting = Vec::with_capacity(batch.len());
    for job in batch {
        deliveries.push(job.delivery);
        waiting.push((job.runbook, job.reply));
    }
    match intake.store.accept_deliveries(&deliveries).await {
        Ok(results) => {
            for ((runbook, reply), r) in waiting.into_iter().zip(results) {
                if let Accepted::Run { run, status, .. } = r {
                    intake.replaced(&runbook, run, status);
                }
                let _ = reply.send(Ok(r));
            }
        }
        Err(e) => {
            // Each waiting request hears the same cause, and answers by it
            // (a full disk or an unreachable database: 503, retry later).
            for (_, reply) in waiting {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
