//! SQLite: issues raised by runbooks for people.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, time_col};
use crate::store::*;

fn issue_row(r: &SqliteRow) -> Result<IssueRow> {
    let need = |c: &str| -> Result<DateTime<Utc>> {
        time_col(r, c)?.ok_or_else(|| StoreError::Corrupt(format!("{c} is empty")))
    };
    Ok(IssueRow {
        key: r.try_get("key")?,
        runbook: r.try_get("runbook")?,
        title: r.try_get("title")?,
        severity: r.try_get("severity")?,
        status: r.try_get("status")?,
        details: r.try_get("details")?,
        link: r.try_get("link")?,
        first_seen: need("first_seen")?,
        last_seen: need("last_seen")?,
        occurrences: r.try_get("occurrences")?,
        resolved_at: time_col(r, "resolved_at")?,
        resolution: r.try_get("resolution")?,
        updated_at: need("updated_at")?,
    })
}

impl SqliteStore {
    pub(super) async fn issue_open(&self, i: &IssueOpen) -> Result<(IssueRow, bool)> {
        let at = ts(i.at);
        let mut tx = self.write_one().await?;
        let row = sqlx::query(
            "INSERT INTO issues (key, runbook, title, severity, status, details, link, first_seen, last_seen, occurrences, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?7, ?7, 1, ?7)
             ON CONFLICT (key) DO UPDATE SET
                 runbook = excluded.runbook, title = excluded.title, severity = excluded.severity,
                 details = COALESCE(excluded.details, issues.details), link = COALESCE(excluded.link, issues.link),
                 last_seen = excluded.last_seen, occurrences = issues.occurrences + 1, updated_at = excluded.updated_at,
                 status = CASE WHEN issues.status = 'resolved' THEN 'open' ELSE issues.status END,
                 resolved_at = CASE WHEN issues.status = 'resolved' THEN NULL ELSE issues.resolved_at END,
                 resolution = CASE WHEN issues.status = 'resolved' THEN NULL ELSE issues.resolution END
             RETURNING *",
        )
        .bind(&i.key)
        .bind(&i.runbook)
        .bind(&i.title)
        .bind(&i.severity)
        .bind(&i.details)
        .bind(&i.link)
        .bind(&at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let issue = issue_row(&row)?;
        let is_new = issue.occurrences == 1;
        Ok((issue, is_new))
    }

    pub(super) async fn issue_resolve(
        &self,
        key: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query(
            "UPDATE issues SET status = 'resolved', resolved_at = ?, resolution = ?, updated_at = ?
             WHERE key = ? AND status IN ('open', 'acknowledged')",
        )
        .bind(ts(at))
        .bind(note)
        .bind(ts(at))
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn issue_ack(&self, key: &str, at: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query("UPDATE issues SET status = 'acknowledged', updated_at = ? WHERE key = ? AND status = 'open'")
            .bind(ts(at))
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn issue_get(&self, key: &str) -> Result<Option<IssueRow>> {
        let row = sqlx::query("SELECT * FROM issues WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(issue_row).transpose()
    }

    pub(super) async fn issue_list(&self, f: &IssueFilter) -> Result<Vec<IssueRow>> {
        let rows = sqlx::query(
            "SELECT * FROM issues
             WHERE (CASE WHEN ?1 IS NULL THEN status IN ('open', 'acknowledged') WHEN ?1 = 'all' THEN 1 ELSE status = ?1 END)
               AND (?2 IS NULL OR severity = ?2) AND (?3 IS NULL OR runbook = ?3) AND (?4 IS NULL OR first_seen < ?4)
             ORDER BY updated_at DESC LIMIT ?5",
        )
        .bind(&f.status)
        .bind(&f.severity)
        .bind(&f.runbook)
        .bind(f.older_than.map(ts))
        .bind(f.limit.clamp(1, 10_000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(issue_row).collect()
    }

    pub(super) async fn issue_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT severity, COUNT(*) AS n FROM issues WHERE status IN ('open', 'acknowledged') GROUP BY severity")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("severity")?, r.try_get("n")?)))
            .collect()
    }
}
