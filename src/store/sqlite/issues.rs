//! SQLite: issues raised by runbooks for people.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::attempts::fence_opt;
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

#[async_trait]
impl IssueStore for SqliteStore {
    async fn open_issue(&self, fence: Option<&Lease>, i: &IssueOpen) -> Result<(IssueRow, bool)> {
        let at = ts(i.at);
        let mut tx = self.write().await?;
        fence_opt(&mut tx, fence).await?;
        // A resolved issue that comes back is reopened, its resolution cleared.
        let row = sqlx::query(
            "INSERT INTO issues (key, runbook, title, severity, status, details, link, first_seen, last_seen, occurrences, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?8, ?5, ?6, ?7, ?7, 1, ?7)
             ON CONFLICT (key) DO UPDATE SET
                 runbook = excluded.runbook, title = excluded.title, severity = excluded.severity,
                 details = COALESCE(excluded.details, issues.details), link = COALESCE(excluded.link, issues.link),
                 last_seen = excluded.last_seen, occurrences = issues.occurrences + 1, updated_at = excluded.updated_at,
                 status = CASE WHEN issues.status = ?9 THEN ?8 ELSE issues.status END,
                 resolved_at = CASE WHEN issues.status = ?9 THEN NULL ELSE issues.resolved_at END,
                 resolution = CASE WHEN issues.status = ?9 THEN NULL ELSE issues.resolution END
             RETURNING *",
        )
        .bind(&i.key)
        .bind(&i.runbook)
        .bind(&i.title)
        .bind(i.severity)
        .bind(&i.details)
        .bind(&i.link)
        .bind(&at)
        .bind(IssueStatus::Open)
        .bind(IssueStatus::Resolved)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let issue = issue_row(&row)?;
        let is_new = issue.occurrences == 1;
        Ok((issue, is_new))
    }

    async fn resolve_issue(
        &self,
        fence: Option<&Lease>,
        key: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        fence_opt(&mut tx, fence).await?;
        let [open, acked] = IssueStatus::UNRESOLVED;
        let done = sqlx::query(
            "UPDATE issues SET status = ?, resolved_at = ?, resolution = ?, updated_at = ?
             WHERE key = ? AND status IN (?, ?)",
        )
        .bind(IssueStatus::Resolved)
        .bind(ts(at))
        .bind(note)
        .bind(ts(at))
        .bind(key)
        .bind(open)
        .bind(acked)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn ack_issue(&self, key: &str, at: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query(
            "UPDATE issues SET status = ?, updated_at = ? WHERE key = ? AND status = ?",
        )
        .bind(IssueStatus::Acknowledged)
        .bind(ts(at))
        .bind(key)
        .bind(IssueStatus::Open)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn issue(&self, key: &str) -> Result<Option<IssueRow>> {
        let row = sqlx::query("SELECT * FROM issues WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(issue_row).transpose()
    }

    async fn list_issues(&self, f: &IssueFilter) -> Result<Vec<IssueRow>> {
        let statuses = if f.statuses.is_empty() {
            IssueStatus::UNRESOLVED.to_vec()
        } else {
            f.statuses.clone()
        };
        let statuses =
            serde_json::to_string(&statuses).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(
            "SELECT * FROM issues
             WHERE status IN (SELECT value FROM json_each(?1))
               AND (?2 IS NULL OR severity = ?2) AND (?3 IS NULL OR runbook = ?3) AND (?4 IS NULL OR first_seen < ?4)
             ORDER BY updated_at DESC LIMIT ?5",
        )
        .bind(statuses)
        .bind(f.severity)
        .bind(&f.runbook)
        .bind(f.older_than.map(ts))
        .bind(f.limit.clamp(1, 10_000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(issue_row).collect()
    }

    async fn open_issue_counts(&self) -> Result<Vec<(Severity, i64)>> {
        let [open, acked] = IssueStatus::UNRESOLVED;
        let rows = sqlx::query(
            "SELECT severity, COUNT(*) AS n FROM issues WHERE status IN (?, ?) GROUP BY severity",
        )
        .bind(open)
        .bind(acked)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("severity")?, r.try_get("n")?)))
            .collect()
    }
}
