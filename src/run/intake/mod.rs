//! The run intake: the one way a firing becomes a run, whatever fired it (a
//! person through the CLI, the API or the UI; a webhook delivery; a schedule
//! slot, caught up or not).
//!
//! It owns what every path shares: the new run's record ([`new_run`]), its
//! admission beside the runbook's active runs ([`admission`]), keeping the
//! runbook's version once per hash, and what `replace` does once a newer run
//! is recorded: the runbook's older active runs are asked to stop. The store
//! records runs only through the calls made here.

mod accept;
pub(crate) mod expr;
mod strict_json;
mod webhook;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

pub use webhook::{Arrival, Verdict, delivery, judge, mask_delivery, parse_body};

use super::{Dispatcher, RunRequest, TriggerInfo};
use crate::runbook::{Concurrency, Runbook, Trigger};
use crate::store::{
    Accepted, Admission, Delivery, Fate, NewRun, RunId, RunStatus, SlotBatch, SlotResult, Store,
    StoreError, TriggerKind, VersionRow,
};

/// The kind of run a trigger makes.
pub fn kind_of(trigger: &Trigger) -> TriggerKind {
    match trigger {
        Trigger::Cron { .. } => TriggerKind::Cron,
        Trigger::Every { .. } => TriggerKind::Every,
        Trigger::Webhook(_) => TriggerKind::Webhook,
        Trigger::Manual => TriggerKind::Manual,
    }
}

/// How a new run of `rb` stands beside its active runs. Under `forbid` a
/// person asking is told no; a schedule or a webhook records a skip.
pub fn admission(rb: &Runbook, kind: TriggerKind) -> Admission {
    match (rb.concurrency, kind) {
        (Concurrency::Allow, _) => Admission::Free,
        (Concurrency::Forbid, TriggerKind::Manual) => Admission::RefuseIfActive,
        (Concurrency::Forbid, _) => Admission::SkipIfActive,
        (Concurrency::Queue | Concurrency::Replace, _) => Admission::Queued,
    }
}

/// The record of a new run of `rb`: the one constructor every path uses.
pub fn new_run(
    rb: &Runbook,
    trigger: &TriggerInfo,
    params: serde_json::Map<String, serde_json::Value>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> NewRun {
    NewRun {
        runbook: rb.name.clone(),
        version_hash: rb.version.hash.clone(),
        trigger_kind: trigger.kind,
        trigger_key: trigger.key.clone(),
        scheduled_at: trigger.scheduled_at,
        params: serde_json::Value::Object(params),
        trigger_data: trigger.data.clone(),
        dry_run,
        created_at: now,
        admission: admission(rb, trigger.kind),
    }
}

/// The params a run gets when nobody gives any: the runbook's defaults.
pub fn default_params(rb: &Runbook) -> serde_json::Map<String, serde_json::Value> {
    crate::run::bind_cli_params(rb, &[]).unwrap_or_default()
}

/// The slots of one schedule trigger to record, with the trigger's new mark.
pub struct DueSlots<'a> {
    pub trigger: &'a Trigger,
    pub run: &'a [DateTime<Utc>],
    pub missed: &'a [DateTime<Utc>],
    pub mark: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

pub struct Intake {
    store: Arc<dyn Store>,
    /// Runbook versions this process has kept in the store.
    saved: Mutex<HashSet<String>>,
    /// Runs executing in this process, to stop for `replace`; none for a
    /// one-off CLI run, which is the only run of its process.
    dispatcher: Option<Arc<Dispatcher>>,
    acceptor: accept::Acceptor,
}

impl Intake {
    /// An intake recording into `store`; webhook deliveries are committed in
    /// batches by a task started here.
    pub fn start(store: Arc<dyn Store>, dispatcher: Option<Arc<Dispatcher>>) -> Arc<Self> {
        let in_flight = if store.sole_writer() {
            1
        } else {
            accept::SHARED_IN_FLIGHT
        };
        Arc::new_cyclic(|me| Intake {
            store,
            saved: Mutex::new(HashSet::new()),
            dispatcher,
            acceptor: accept::Acceptor::start(me.clone(), in_flight),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Keep the text of the runbook's version before a run refers to it
    /// (once per hash and process).
    ///
    /// Fails when the store cannot write.
    pub async fn ensure_version(&self, rb: &Runbook) -> Result<(), StoreError> {
        if self
            .saved
            .lock()
            .expect("saved lock")
            .contains(&rb.version.hash)
        {
            return Ok(());
        }
        self.store
            .save_version(&VersionRow {
                hash: rb.version.hash.clone(),
                runbook: rb.name.clone(),
                path: rb.path.display().to_string(),
                yaml: rb.version.yaml.clone(),
                scripts: rb.version.scripts.clone(),
                created_at: crate::clock::now(),
            })
            .await?;
        self.saved
            .lock()
            .expect("saved lock")
            .insert(rb.version.hash.clone());
        Ok(())
    }

    /// Record a run a person asked for (CLI, API, UI, runbook tests).
    ///
    /// Fails with `Conflict` under `forbid` while another run is active, and
    /// when the store cannot write.
    pub async fn submit(&self, req: &RunRequest) -> Result<RunId, StoreError> {
        let rb = &req.runbook;
        self.ensure_version(rb).await?;
        let run = new_run(
            rb,
            &req.trigger,
            req.params.clone(),
            req.dry_run,
            crate::clock::now(),
        );
        let (id, status) = self.store.insert_run(&run).await?;
        self.replaced(rb, id, status);
        Ok(id)
    }

    /// Record a webhook delivery (with its run); returns once it is durable.
    ///
    /// Fails when the store cannot write (a full disk is told apart).
    pub async fn accept(&self, rb: Arc<Runbook>, d: Delivery) -> Result<Accepted, StoreError> {
        if matches!(d.fate, Fate::Run { .. }) {
            self.ensure_version(&rb).await?;
        }
        self.acceptor.accept(rb, d).await
    }

    /// Record the due slots of a schedule trigger of `rb` and move its mark.
    ///
    /// Fails when the runbook's version or the slots cannot be written.
    pub async fn record_slots(
        &self,
        rb: &Runbook,
        due: DueSlots<'_>,
    ) -> Result<Vec<SlotResult>, StoreError> {
        self.ensure_version(rb).await?;
        let kind = kind_of(due.trigger);
        let key = due.trigger.key();
        let run_at = |slot: &DateTime<Utc>| {
            let trigger = TriggerInfo {
                kind,
                key: Some(key.clone()),
                scheduled_at: Some(*slot),
                data: serde_json::json!({}),
            };
            new_run(rb, &trigger, default_params(rb), false, due.now)
        };
        let batch = SlotBatch {
            runs: due.run.iter().map(run_at).collect(),
            missed: due.missed.iter().map(run_at).collect(),
            runbook: rb.name.clone(),
            trigger_key: key.clone(),
            mark: due.mark,
            now: due.now,
        };
        let results = self.store.record_slots(&batch).await?;
        for r in &results {
            if let SlotResult::Created(id, _) = r {
                self.replaced(rb, *id, RunStatus::Queued);
            }
        }
        Ok(results)
    }

    /// `replace`: a newer run was recorded and waits, so the runbook's older
    /// active runs are asked to stop: at once in this process, and through
    /// the store in any other (it sees the request at its next heartbeat).
    /// The newer run starts once they have ended (it claims the runbook
    /// after them).
    fn replaced(&self, rb: &Runbook, run: RunId, status: RunStatus) {
        if rb.concurrency != Concurrency::Replace || status != RunStatus::Queued {
            return;
        }
        let Some(d) = &self.dispatcher else { return };
        let n = d.cancel_older(&rb.name, run);
        if n > 0 {
            tracing::info!(run.id = run, runbook = %rb.name, cancelled = n, "cancelling the active run to replace it (concurrency: replace)");
        }
        if !self.store.sole_writer() {
            let (store, name) = (self.store.clone(), rb.name.clone());
            tokio::spawn(async move {
                if let Err(e) = store.request_cancel(Some(&name), run).await {
                    tracing::error!(run.id = run, runbook = %name, error = %e, "could not ask other daemons to stop the run it replaces");
                }
            });
        }
    }

    /// Start whatever the new runs allow (after a commit).
    pub async fn pump(&self) {
        if let Some(d) = &self.dispatcher {
            d.pump().await;
        }
    }
}
