//! SQLite: the email outbox.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::attempts::fence_opt;
use super::{SqliteStore, time_col};
use crate::store::*;

fn email_row(r: &SqliteRow) -> Result<EmailRow> {
    let need = |c: &str| -> Result<DateTime<Utc>> {
        time_col(r, c)?.ok_or_else(|| StoreError::Corrupt(format!("{c} is empty")))
    };
    let recipients: String = r.try_get("recipients")?;
    let recipients: serde_json::Value = serde_json::from_str(&recipients).unwrap_or_default();
    let list = |k: &str| -> Vec<String> {
        recipients[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(EmailRow {
        id: r.try_get("id")?,
        runbook: r.try_get("runbook")?,
        run_id: r.try_get("run_id")?,
        sender: r.try_get("sender")?,
        to: list("to"),
        cc: list("cc"),
        subject: r.try_get("subject")?,
        text: r.try_get("text_body")?,
        html: r.try_get("html_body")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: need("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        message_id: r.try_get("message_id")?,
        results: parse_results(r.try_get("results")?),
        created_at: need("created_at")?,
        sent_at: time_col(r, "sent_at")?,
    })
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn queue_email(&self, fence: Option<&Lease>, e: &NewEmail) -> Result<(i64, bool)> {
        let mut tx = self.write().await?;
        fence_opt(&mut tx, fence).await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO outbox (idem_key, runbook, run_id, sender, recipients, subject, text_body, html_body, status, next_attempt_at, created_at, message_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING RETURNING id",
        )
        .bind(&e.idem_key)
        .bind(&e.runbook)
        .bind(e.run_id)
        .bind(&e.sender)
        .bind(serde_json::json!({"to": e.to, "cc": e.cc}).to_string())
        .bind(&e.subject)
        .bind(&e.text)
        .bind(&e.html)
        .bind(EmailStatus::Queued)
        .bind(ts(e.at))
        .bind(ts(e.at))
        .bind(&e.message_id)
        .fetch_optional(&mut *tx)
        .await?;
        let out = match inserted {
            Some(id) => (id, true),
            None => {
                let id: i64 = sqlx::query_scalar("SELECT id FROM outbox WHERE idem_key = ?")
                    .bind(&e.idem_key)
                    .fetch_one(&mut *tx)
                    .await?;
                (id, false)
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    async fn take_due_emails(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<EmailRow>> {
        let mut tx = self.write_one().await?;
        let rows = sqlx::query(
            "UPDATE outbox SET status = ?1, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox WHERE status = ?2 AND next_attempt_at <= ?3 ORDER BY id LIMIT ?4)
             RETURNING *",
        )
        .bind(EmailStatus::Sending)
        .bind(EmailStatus::Queued)
        .bind(ts(now))
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(email_row).collect()
    }

    async fn finish_email(
        &self,
        email: &EmailRow,
        a: &EmailAttempt,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        // A held attempt gives back the attempt its taking counted.
        let q = sqlx::query(
            "UPDATE outbox SET status = ?, results = ?, last_error = ?,
                    next_attempt_at = COALESCE(?, next_attempt_at),
                    sent_at = COALESCE(sent_at, ?), attempts = attempts - ?
             WHERE id = ? AND status = ? AND attempts = ?",
        )
        .bind(a.status)
        .bind(serde_json::to_string(&a.results).expect("results serialise"))
        .bind(a.error.as_deref().map(cap_text))
        .bind(a.retry_at.map(ts))
        .bind(a.any_sent().then(|| ts(at)))
        .bind(i64::from(!a.counted));
        let mut tx = self.write_one().await?;
        let done = q
            .bind(email.id)
            .bind(EmailStatus::Sending)
            .bind(email.attempts)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_emails(&self, status: Option<EmailStatus>, limit: u32) -> Result<Vec<EmailRow>> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2",
        )
        .bind(status)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(email_row).collect()
    }

    async fn requeue_sending_emails(&self) -> Result<u64> {
        let mut tx = self.write_one().await?;
        let done = sqlx::query("UPDATE outbox SET status = ? WHERE status = ?")
            .bind(EmailStatus::Queued)
            .bind(EmailStatus::Sending)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
