//! SQLite: a run of webhook deliveries recorded set-wise, a few statements
//! for the whole batch instead of five for each delivery: the dedup keys
//! already held are read at once, ids are handed out in memory (the writer
//! holds the database, so nothing else takes one meanwhile), and the runs,
//! the deliveries (each with its run's id) and the claimed keys are written
//! as one multi-row statement each. Deliveries whose fate depends on other
//! runs (a `limit:`, `concurrency: forbid`) are left to the one-by-one path
//! in `deliveries.rs`.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::rows::keep_prepared;
use crate::store::*;

/// Whether the set-wise path can record `d`: nothing about it depends on
/// runs recorded before it.
pub(super) fn plain(d: &Delivery) -> bool {
    match &d.fate {
        Fate::Record { .. } => true,
        Fate::Run { run, limit } => {
            limit.is_none() && matches!(run.admission, Admission::Free | Admission::Queued)
        }
    }
}

/// (runbook, trigger, dedup key).
type Key<'a> = (&'a str, &'a str, &'a str);

fn key_of(d: &Delivery) -> Option<Key<'_>> {
    let k = d.dedup_key.as_deref()?;
    Some((d.runbook.as_str(), d.trigger_key.as_str(), k))
}

/// A dedup key's holder: its delivery, its run, and until when it holds.
#[derive(Clone)]
struct Holder {
    delivery: i64,
    run: Option<RunId>,
    until: String,
}

/// One delivery row to insert.
struct DeliveryIn<'a> {
    id: i64,
    d: &'a Delivery,
    outcome: DeliveryOutcome,
    run: Option<RunId>,
    duplicate_of: Option<i64>,
    detail: Option<&'a str>,
}

/// Record `batch` (all [`plain`]), in order; ids follow the batch's order.
pub(super) async fn accept(tx: &mut SqliteConnection, batch: &[Delivery]) -> Result<Vec<Accepted>> {
    let held = held_keys(tx, batch).await?;
    let (mut next_delivery, mut next_run) = last_ids(tx).await?;
    let mut claims: HashMap<Key, Holder> = HashMap::new();
    let mut runs: Vec<(RunId, NewRun)> = Vec::new();
    let mut rows = Vec::with_capacity(batch.len());
    let mut out = Vec::with_capacity(batch.len());
    for d in batch {
        next_delivery += 1;
        let id = next_delivery;
        let key = key_of(d);
        let holder = key.and_then(|k| {
            claims.get(&k).cloned().or_else(|| {
                held.get(&(k.0.to_string(), k.1.to_string(), k.2.to_string()))
                    .filter(|h| h.until > ts(d.received_at))
                    .cloned()
            })
        });
        if let Some(h) = holder {
            rows.push(DeliveryIn {
                id,
                d,
                outcome: DeliveryOutcome::Duplicate,
                run: h.run,
                duplicate_of: Some(h.delivery),
                detail: None,
            });
            out.push(Accepted::Duplicate {
                delivery: id,
                original: h.delivery,
                run: h.run,
            });
            continue;
        }
        let (row, accepted) = match &d.fate {
            Fate::Record { outcome, detail } => (
                (*outcome, None, Some(detail.as_str())),
                Accepted::Recorded { delivery: id },
            ),
            Fate::Run { run, .. } => {
                next_run += 1;
                let mut run = run.clone();
                run.trigger_data["delivery_id"] = serde_json::json!(id);
                runs.push((next_run, run));
                (
                    (DeliveryOutcome::Accepted, Some(next_run), None),
                    Accepted::Run {
                        delivery: id,
                        run: next_run,
                        status: RunStatus::Queued,
                    },
                )
            }
        };
        let (outcome, run, detail) = row;
        rows.push(DeliveryIn {
            id,
            d,
            outcome,
            run,
            duplicate_of: None,
            detail,
        });
        if let Some(k) = key {
            let until = ts(d.dedup_until);
            claims.insert(
                k,
                Holder {
                    delivery: id,
                    run,
                    until,
                },
            );
        }
        out.push(accepted);
    }
    insert_runs(tx, &runs).await?;
    insert_deliveries(tx, &rows).await?;
    claim_keys(tx, &claims).await?;
    Ok(out)
}

/// The last delivery id and run id handed out.
async fn last_ids(tx: &mut SqliteConnection) -> Result<(i64, RunId)> {
    let row = sqlx::query(
        "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0),
                    COALESCE((SELECT max(id) FROM deliveries), 0)),
                max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0),
                    COALESCE((SELECT max(id) FROM runs), 0))",
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// A key read from the database.
type OwnedKey = (String, String, String);

/// The batch's dedup keys that are already held, by whom and until when.
async fn held_keys(
    tx: &mut SqliteConnection,
    batch: &[Delivery],
) -> Result<HashMap<OwnedKey, Holder>> {
    let keyed: Vec<&Delivery> = batch.iter().filter(|d| d.dedup_key.is_some()).collect();
    if keyed.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = QueryBuilder::<Sqlite>::new("WITH k (r, t, d) AS (");
    q.push_values(&keyed, |mut b, d| {
        b.push_bind(&d.runbook)
            .push_bind(&d.trigger_key)
            .push_bind(d.dedup_key.as_deref());
    });
    q.push(
        ") SELECT w.runbook, w.trigger_key, w.dedup_key, w.delivery_id, w.run_id, w.expires_at
           FROM k JOIN webhook_dedup w ON w.runbook = k.r AND w.trigger_key = k.t AND w.dedup_key = k.d",
    );
    let found = q
        .build()
        .persistent(keep_prepared(keyed.len()))
        .fetch_all(&mut *tx)
        .await?;
    let mut held = HashMap::with_capacity(found.len());
    for row in found {
        let key = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let holder = Holder {
            delivery: row.try_get(3)?,
            run: row.try_get(4)?,
            until: row.try_get(5)?,
        };
        held.insert(key, holder);
    }
    Ok(held)
}

async fn insert_runs(tx: &mut SqliteConnection, runs: &[(RunId, NewRun)]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO runs (id, runbook, version_hash, trigger_kind, trigger_key, scheduled_at,
                           status, params, trigger_data, dry_run, created_at) ",
    );
    q.push_values(runs, |mut b, (id, run)| {
        b.push_bind(*id)
            .push_bind(&run.runbook)
            .push_bind(&run.version_hash)
            .push_bind(run.trigger_kind)
            .push_bind(&run.trigger_key)
            .push_bind(run.scheduled_at.map(ts))
            .push_bind(RunStatus::Queued)
            .push_bind(cap_json(&run.params))
            .push_bind(run.trigger_data.to_string())
            .push_bind(run.dry_run)
            .push_bind(ts(run.created_at));
    });
    q.build()
        .persistent(keep_prepared(runs.len()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn insert_deliveries(tx: &mut SqliteConnection, rows: &[DeliveryIn<'_>]) -> Result<()> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO deliveries (id, runbook, trigger_key, received_at, dedup_key, outcome, run_id,
                                 duplicate_of, headers, body, detail) ",
    );
    q.push_values(rows, |mut b, r| {
        b.push_bind(r.id)
            .push_bind(&r.d.runbook)
            .push_bind(&r.d.trigger_key)
            .push_bind(ts(r.d.received_at))
            .push_bind(&r.d.dedup_key)
            .push_bind(r.outcome)
            .push_bind(r.run)
            .push_bind(r.duplicate_of)
            .push_bind(r.d.headers.to_string())
            .push_bind(&r.d.body)
            .push_bind(r.detail);
    });
    q.build()
        .persistent(keep_prepared(rows.len()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Hold the keys claimed in this batch (new, or replacing an expired hold).
async fn claim_keys(tx: &mut SqliteConnection, claims: &HashMap<Key<'_>, Holder>) -> Result<()> {
    if claims.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO webhook_dedup (runbook, trigger_key, dedup_key, delivery_id, run_id, expires_at) ",
    );
    q.push_values(claims, |mut b, ((r, t, k), h)| {
        b.push_bind(*r)
            .push_bind(*t)
            .push_bind(*k)
            .push_bind(h.delivery)
            .push_bind(h.run)
            .push_bind(&h.until);
    });
    q.push(
        " ON CONFLICT (runbook, trigger_key, dedup_key) DO UPDATE
            SET delivery_id = excluded.delivery_id, run_id = excluded.run_id, expires_at = excluded.expires_at",
    );
    q.build()
        .persistent(keep_prepared(claims.len()))
        .execute(&mut *tx)
        .await?;
    Ok(())
}
