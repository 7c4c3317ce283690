//! `runbookd prune`: apply retention now.

use chrono::Utc;

use super::{Env, Exit, Failure, Outcome};
use crate::cli::PruneArgs;
use crate::store::{Access, StoreError};

pub async fn run(env: &Env, args: PruneArgs) -> Outcome {
    let keep = match &args.older_than {
        Some(t) => crate::duration::parse(t)
            .map_err(|e| Failure::new(Exit::Usage, format!("--older-than: {e}")))?,
        None => env.config.retention,
    };
    let store = crate::store::open(&env.config.database, Access::Exclusive)
        .await
        .map_err(|e| match e {
            StoreError::Busy(m) => Failure::new(Exit::Unavailable, m)
                .hint("the running daemon prunes on its own every 6 hours"),
            other => other.into(),
        })?;
    let cutoff = Utc::now()
        - chrono::TimeDelta::from_std(keep)
            .map_err(|_| Failure::new(Exit::Usage, "--older-than is too long"))?;
    let n = store.prune(cutoff).await?;
    println!(
        "pruned {n} run(s) created before {} (older than {}); issues and runbook versions are kept",
        crate::output::local_time(cutoff),
        crate::duration::spec(keep)
    );
    Ok(Exit::Ok)
}
