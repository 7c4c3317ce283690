//! `runbookd prune`: apply retention now — here, or through the daemon that
//! holds the database (`POST /api/v1/prune`), with the same output.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::remote::Daemon;
use super::{Env, Exit, Failure, Outcome};
use crate::cli::PruneArgs;
use crate::store::{Access, StoreError};

/// What was pruned, as the API answers it.
#[derive(Deserialize)]
struct Pruned {
    pruned: u64,
    cutoff: DateTime<Utc>,
    older_than: String,
}

pub async fn run(env: &Env, args: PruneArgs) -> Outcome {
    let keep = match &args.older_than {
        Some(t) => crate::duration::parse(t)
            .map_err(|e| Failure::new(Exit::Usage, format!("--older-than: {e}")))?,
        None => env.config.retention,
    };
    let pruned = match crate::store::open(&env.config.database, Access::Exclusive).await {
        Ok(store) => {
            let cutoff = crate::store::prune_cutoff(Utc::now(), keep)
                .ok_or_else(|| Failure::new(Exit::Usage, "--older-than is too long"))?;
            Pruned {
                pruned: store.prune(cutoff).await?,
                cutoff,
                older_than: crate::duration::spec(keep),
            }
        }
        Err(StoreError::Busy { database, holder }) => {
            // The daemon applies its own clock; the age is this command's.
            let daemon = Daemon::new(env, &database, &holder);
            let body = serde_json::json!({ "older_than": crate::duration::spec(keep) });
            (daemon.post("/api/v1/prune", &body).await).map_err(|r| daemon.failure("prune", r))?
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "pruned {} run(s) created before {} (older than {}); issues and runbook versions are kept",
        pruned.pruned,
        crate::output::local_time(pruned.cutoff),
        pruned.older_than
    );
    Ok(Exit::Ok)
}
