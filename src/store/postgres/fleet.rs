//! PostgreSQL: what the daemons sharing the store tell each other about
//! themselves: the runbook versions each has loaded.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;

use super::PostgresStore;
use crate::store::*;

#[async_trait]
impl FleetStore for PostgresStore {
    async fn publish_versions(&self, owner: &str, loaded: &[(String, String)]) -> Result<()> {
        let (names, hashes): (Vec<&str>, Vec<&str>) =
            loaded.iter().map(|(n, h)| (n.as_str(), h.as_str())).unzip();
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM daemon_versions WHERE owner = $1 AND NOT (runbook = ANY($2))")
            .bind(owner)
            .bind(&names)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO daemon_versions (owner, runbook, hash, seen_at)
             SELECT $1, n, h, now() FROM unnest($2::text[], $3::text[]) AS v(n, h)
             ON CONFLICT (owner, runbook) DO UPDATE SET hash = excluded.hash, seen_at = excluded.seen_at",
        )
        .bind(owner)
        .bind(&names)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        // Daemons gone for a while (stopped, dead) are forgotten by whoever looks.
        sqlx::query("DELETE FROM daemon_versions WHERE seen_at < now() - interval '10 minutes'")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn version_skew(
        &self,
        seen_within: std::time::Duration,
    ) -> Result<HashMap<String, Vec<LoadedVersion>>> {
        let rows = sqlx::query(
            "WITH live AS (SELECT * FROM daemon_versions
                           WHERE seen_at >= now() - make_interval(secs => $1))
             SELECT runbook, hash, count(*) AS daemons FROM live
             WHERE runbook IN (SELECT runbook FROM live GROUP BY runbook HAVING count(DISTINCT hash) > 1)
             GROUP BY runbook, hash ORDER BY runbook, daemons DESC, hash",
        )
        .bind(seen_within.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<LoadedVersion>> = HashMap::new();
        for r in &rows {
            out.entry(r.try_get("runbook")?)
                .or_default()
                .push(LoadedVersion {
                    hash: r.try_get("hash")?,
                    daemons: r.try_get::<i64, _>("daemons")? as u64,
                });
        }
        Ok(out)
    }
}
