//! PostgreSQL: issues raised by runbooks for people. Opening, bumping and
//! reopening an issue is one upsert, so daemons opening the same key at
//! once count every occurrence and make one issue.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use super::attempts::fence_opt;
use super::rows::{opt_text, text};
use crate::store::*;

fn issue_row(r: &PgRow) -> Result<IssueRow> {
    Ok(IssueRow {
        key: r.try_get("key")?,
        runbook: r.try_get("runbook")?,
        title: r.try_get("title")?,
        severity: r.try_get("severity")?,
        status: r.try_get("status")?,
        details: r.try_get("details")?,
        link: r.try_get("link")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        occurrences: r.try_get::<i32, _>("occurrences")?.into(),
        resolved_at: r.try_get("resolved_at")?,
        resolution: r.try_get("resolution")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[async_trait]
impl IssueStore for PostgresStore {
    async fn open_issue(&self, fence: Option<&Lease>, i: &IssueOpen) -> Result<(IssueRow, bool)> {
        let mut tx = self.begin().await?;
        fence_opt(&mut tx, fence).await?;
        // A resolved issue that comes back is reopened, its resolution cleared.
        let row = sqlx::query(
            "INSERT INTO issues (key, runbook, title, severity, status, details, link, first_seen, last_seen, occurrences, updated_at)
             VALUES ($1, $2, $3, $4, $8, $5, $6, $7, $7, 1, $7)
             ON CONFLICT (key) DO UPDATE SET
                 runbook = excluded.runbook, title = excluded.title, severity = excluded.severity,
                 details = COALESCE(excluded.details, issues.details), link = COALESCE(excluded.link, issues.link),
                 last_seen = excluded.last_seen, occurrences = issues.occurrences + 1, updated_at = excluded.updated_at,
                 status = CASE WHEN issues.status = $9 THEN $8 ELSE issues.status END,
                 resolved_at = CASE WHEN issues.status = $9 THEN NULL ELSE issues.resolved_at END,
                 resolution = CASE WHEN issues.status = $9 THEN NULL ELSE issues.resolution END
             RETURNING *",
        )
        .bind(&i.key)
        .bind(&i.runbook)
        .bind(text(&i.title))
        .bind(i.severity)
        .bind(opt_text(&i.details))
        .bind(opt_text(&i.link))
        .bind(i.at)
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
        let mut tx = self.begin().await?;
        fence_opt(&mut tx, fence).await?;
        let [open, acked] = IssueStatus::UNRESOLVED;
        let done = sqlx::query(
            "UPDATE issues SET status = $1, resolved_at = $2, resolution = $3, updated_at = $2
             WHERE key = $4 AND status IN ($5, $6)",
        )
        .bind(IssueStatus::Resolved)
        .bind(at)
        .bind(note.map(text))
        .bind(key)
        .bind(open)
        .bind(acked)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn ack_issue(&self, key: &str, at: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE issues SET status = $1, updated_at = $2 WHERE key = $3 AND status = $4",
        )
        .bind(IssueStatus::Acknowledged)
        .bind(at)
        .bind(key)
        .bind(IssueStatus::Open)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn issue(&self, key: &str) -> Result<Option<IssueRow>> {
        let row = sqlx::query("SELECT * FROM issues WHERE key = $1")
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
        let statuses: Vec<&str> = statuses.into_iter().map(IssueStatus::as_str).collect();
        let rows = sqlx::query(
            "SELECT * FROM issues
             WHERE status = ANY($1::text[])
               AND ($2::text IS NULL OR severity = $2) AND ($3::text IS NULL OR runbook = $3)
               AND ($4::timestamptz IS NULL OR first_seen < $4)
             ORDER BY updated_at DESC LIMIT $5",
        )
        .bind(statuses)
        .bind(f.severity)
        .bind(&f.runbook)
        .bind(f.older_than)
        .bind(f.limit.clamp(1, 10_000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(issue_row).collect()
    }

    async fn open_issue_counts(&self) -> Result<Vec<(Severity, i64)>> {
        let [open, acked] = IssueStatus::UNRESOLVED;
        let rows = sqlx::query(
            "SELECT severity, COUNT(*) AS n FROM issues WHERE status IN ($1, $2) GROUP BY severity",
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
