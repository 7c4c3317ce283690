//! SQLite: the records every run makes, the start of an attempt and the
//! run's end (with its last step and log lines), written for many runs at
//! once. Runs ask; a task gathers whatever was asked while it wrote the
//! last batch and writes it in a few multi-row statements, so a busy daemon
//! makes a handful of statements per batch rather than several per run
//! (every statement is a hand-off to the database's thread and back). Each
//! answer still comes after the commit, and each row keeps its own fence: a
//! run whose lease was lost is told so, the others in its batch are
//! recorded. Should a batch's statement fail, its runs are written one by
//! one, so one bad record cannot hold back the others.
//!
//! An attempt's id is handed out here, before its row is written (every
//! attempt of this database is inserted through this writer), so a run
//! need not wait for its start to be written before it runs; what it does
//! meanwhile stays inside the process until the start is on disk
//! (`RunStore::start_attempt_early`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::attempts::{end_held_run_in, fenced, insert_step_in};
use super::rows::insert_logs_in;
use super::run_records::{end_many, last_attempt_id, start_many};
use super::writer::{Durable, Handle, stopped};
use crate::store::*;

/// At most this many runs share one batch.
const MAX_BATCH: usize = 256;

/// The number of the attempt started, or `None` when the run was not startable.
type Started = Option<u32>;

pub(super) struct StartJob {
    /// The attempt's id, handed out by the recorder.
    pub(super) id: AttemptId,
    pub(super) run: RunId,
    /// The attempt's number; `None`: the run's attempts so far plus one.
    pub(super) number: Option<u32>,
    pub(super) owner: String,
    pub(super) at: String,
    pub(super) until: String,
    /// Answered once the start is made; the [`Durable`] tells when it is on disk.
    reply: oneshot::Sender<Result<(Started, Durable)>>,
}

pub(super) struct EndJob {
    pub(super) lease: Lease,
    pub(super) step: Option<StepRow>,
    pub(super) lines: Vec<LogRow>,
    pub(super) end: RunEnd,
    reply: oneshot::Sender<Result<()>>,
}

pub(super) struct Recorder {
    starts: mpsc::Sender<StartJob>,
    ends: mpsc::Sender<EndJob>,
    /// The last attempt id handed out.
    last_attempt: Arc<AtomicI64>,
}

impl Recorder {
    /// Start the tasks that write through `writer`; they end with the recorder.
    pub async fn start(writer: Handle) -> Result<Self> {
        let last = last_attempt_id(&mut *writer.lease(false).await?).await?;
        let last_attempt = Arc::new(AtomicI64::new(last));
        let (starts, start_rx) = mpsc::channel(4096);
        let (ends, end_rx) = mpsc::channel(4096);
        tokio::spawn(start_loop(start_rx, writer.clone(), last_attempt.clone()));
        tokio::spawn(end_loop(end_rx, writer));
        Ok(Recorder {
            starts,
            ends,
            last_attempt,
        })
    }

    /// Ask for an attempt's start; the answer comes once it is made.
    async fn ask_start(
        &self,
        run: RunId,
        number: Option<u32>,
        owner: &str,
        at: String,
        until: String,
    ) -> Result<(AttemptId, oneshot::Receiver<Result<(Started, Durable)>>)> {
        let id = self.last_attempt.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, answer) = oneshot::channel();
        let job = StartJob {
            id,
            run,
            number,
            owner: owner.to_string(),
            at,
            until,
            reply,
        };
        self.starts.send(job).await.map_err(|_| stopped())?;
        Ok((id, answer))
    }

    /// As [`RunStore::start_attempt_early`]: answers at once.
    pub async fn start_early(
        &self,
        run: RunId,
        number: u32,
        owner: &str,
        at: String,
        until: String,
    ) -> Result<(Lease, Starting)> {
        let (attempt, answer) = self.ask_start(run, Some(number), owner, at, until).await?;
        let made = async move {
            let (started, durable) = answer.await.map_err(|_| stopped())??;
            if started.is_none() {
                return Err(StoreError::Conflict(
                    "the run was started elsewhere or has ended".into(),
                ));
            }
            Ok(Pending::new(durable.wait()))
        };
        let lease = Lease {
            run,
            attempt,
            number,
            owner: owner.to_string(),
        };
        Ok((lease, Starting::new(made)))
    }

    /// As [`RunStore::start_attempt`]: answers once the start is on disk.
    pub async fn start_attempt(
        &self,
        run: RunId,
        owner: &str,
        at: String,
        until: String,
    ) -> Result<Option<Lease>> {
        let (attempt, answer) = self.ask_start(run, None, owner, at, until).await?;
        let (started, durable) = answer.await.map_err(|_| stopped())??;
        let Some(number) = started else {
            return Ok(None);
        };
        durable.wait().await?;
        Ok(Some(Lease {
            run,
            attempt,
            number,
            owner: owner.to_string(),
        }))
    }

    /// As [`RunStore::finish`].
    pub async fn finish(
        &self,
        lease: &Lease,
        step: Option<&StepRow>,
        lines: &[LogRow],
        end: &RunEnd,
    ) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let job = EndJob {
            lease: lease.clone(),
            step: step.cloned(),
            lines: lines.to_vec(),
            end: end.clone(),
            reply,
        };
        self.ends.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// What has been asked since the last batch (at least one job), or `None`
/// once the recorder is gone.
async fn gather<J>(rx: &mut mpsc::Receiver<J>) -> Option<Vec<J>> {
    let mut batch = vec![rx.recv().await?];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Answer each job once its writes are on disk (or with why not).
fn answer_when_durable<T: Send + 'static>(
    written: Result<Durable>,
    replies: Vec<(oneshot::Sender<Result<T>>, Result<T>)>,
) {
    tokio::spawn(async move {
        let committed = match written {
            Ok(durable) => durable.wait().await,
            Err(e) => Err(e),
        };
        for (reply, result) in replies {
            let _ = reply.send(match &committed {
                Ok(()) => result,
                Err(e) => Err(e.clone()),
            });
        }
    });
}

async fn start_loop(mut rx: mpsc::Receiver<StartJob>, writer: Handle, last: Arc<AtomicI64>) {
    while let Some(jobs) = gather(&mut rx).await {
        let mut lease = match writer.lease(false).await {
            Ok(lease) => lease,
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
                continue;
            }
        };
        match start_many(&mut lease, &jobs).await {
            Ok(started) => {
                let written = lease.release().await;
                if started.len() < jobs.len() {
                    resync(&writer, &last).await;
                }
                for job in jobs {
                    let answer = match &written {
                        Ok(durable) => Ok((started.get(&job.id).copied(), durable.clone())),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = job.reply.send(answer);
                }
            }
            Err(e) => {
                drop(lease);
                tracing::warn!(error = %e, runs = jobs.len(), "could not record a batch of attempt starts; recording them one by one");
                for job in jobs {
                    start_alone(&writer, job).await;
                }
            }
        }
    }
}

/// A start was refused: should that be because its id was taken (an
/// attempt written by other means), the next ids start past the highest.
async fn resync(writer: &Handle, last: &AtomicI64) {
    let highest = match writer.lease(false).await {
        Ok(mut lease) => last_attempt_id(&mut lease).await,
        Err(e) => Err(e),
    };
    match highest {
        Ok(id) => {
            last.fetch_max(id, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!(error = %e, "could not read the highest attempt id"),
    }
}

/// One job's start in a lease of its own.
async fn start_alone(writer: &Handle, job: StartJob) {
    let answer = async {
        let mut lease = writer.lease(false).await?;
        let started = start_many(&mut lease, std::slice::from_ref(&job)).await?;
        Ok((started.get(&job.id).copied(), lease.release().await?))
    }
    .await;
    let _ = job.reply.send(answer);
}

async fn end_loop(mut rx: mpsc::Receiver<EndJob>, writer: Handle) {
    while let Some(jobs) = gather(&mut rx).await {
        let mut lease = match writer.lease(true).await {
            Ok(lease) => lease,
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
                continue;
            }
        };
        match end_many(&mut lease, &jobs).await {
            Ok(ended) => {
                let written = lease.release().await;
                let replies = jobs
                    .into_iter()
                    .map(|j| {
                        let held = ended.contains(&j.lease.run);
                        let result = if held { Ok(()) } else { Err(fenced(&j.lease)) };
                        (j.reply, result)
                    })
                    .collect();
                answer_when_durable(written, replies);
            }
            Err(e) => {
                drop(lease);
                tracing::warn!(error = %e, runs = jobs.len(), "could not record a batch of run ends; recording them one by one");
                for job in jobs {
                    end_alone(&writer, job).await;
                }
            }
        }
    }
}

/// One job's end in a lease of its own.
async fn end_alone(writer: &Handle, job: EndJob) {
    let result = async {
        let mut lease = writer.lease(true).await?;
        let step_held = match &job.step {
            Some(s) => insert_step_in(&mut lease, &job.lease, s).await?,
            None => true,
        };
        if !step_held || !end_held_run_in(&mut lease, &job.lease, &job.end).await? {
            return Err(fenced(&job.lease));
        }
        insert_logs_in(&mut lease, &job.lines).await?;
        lease.release().await
    }
    .await;
    match result {
        Ok(durable) => answer_when_durable(Ok(durable), vec![(job.reply, Ok(()))]),
        Err(e) => {
            let _ = job.reply.send(Err(e));
        }
    }
}
