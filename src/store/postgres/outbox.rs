//! PostgreSQL: the email outbox. An email is queued once per idempotency
//! key, and each due email is taken by one daemon (`FOR UPDATE SKIP LOCKED`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use super::attempts::fence_opt;
use super::rows::{capped, opt_text, text};
use crate::store::*;

fn email_row(r: &PgRow) -> Result<EmailRow> {
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
        attempts: r.try_get::<i32, _>("attempts")?.into(),
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        message_id: r.try_get("message_id")?,
        results: parse_results(r.try_get("results")?),
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
    })
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn queue_email(&self, fence: Option<&Lease>, e: &NewEmail) -> Result<(i64, bool)> {
        let mut tx = self.begin().await?;
        fence_opt(&mut tx, fence).await?;
        // A key another transaction is queuing makes this insert wait for
        // it; the select that follows then sees its email.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO outbox (idem_key, runbook, run_id, sender, recipients, subject, text_body, html_body, status, next_attempt_at, created_at, message_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) ON CONFLICT (idem_key) DO NOTHING RETURNING id",
        )
        .bind(&e.idem_key)
        .bind(&e.runbook)
        .bind(e.run_id)
        .bind(&e.sender)
        .bind(serde_json::json!({"to": e.to, "cc": e.cc}).to_string())
        .bind(text(&e.subject))
        .bind(opt_text(&e.text))
        .bind(opt_text(&e.html))
        .bind(EmailStatus::Queued)
        .bind(e.at)
        .bind(text(&e.message_id))
        .fetch_optional(&mut *tx)
        .await?;
        let out = match inserted {
            Some(id) => (id, true),
            None => {
                let id: i64 = sqlx::query_scalar("SELECT id FROM outbox WHERE idem_key = $1")
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
        // Rows another daemon is taking are skipped, not waited for, so each
        // email goes to one daemon. The oldest due first, as with SQLite.
        let rows = sqlx::query(
            "WITH due AS (SELECT id FROM outbox WHERE status = $2 AND next_attempt_at <= $3
                          ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE outbox o SET status = $1, attempts = o.attempts + 1,
                    sending_until = now() + interval '10 minutes'
             FROM due WHERE o.id = due.id
             RETURNING o.*",
        )
        .bind(EmailStatus::Sending)
        .bind(EmailStatus::Queued)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut emails = rows.iter().map(email_row).collect::<Result<Vec<_>>>()?;
        // RETURNING keeps no order of its own.
        emails.sort_by_key(|e| e.id);
        Ok(emails)
    }

    async fn finish_email(
        &self,
        email: &EmailRow,
        a: &EmailAttempt,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        // A held attempt gives back the attempt its taking counted.
        let q = sqlx::query(
            "UPDATE outbox SET status = $1, results = $2, last_error = $3,
                    next_attempt_at = COALESCE($4, next_attempt_at),
                    sent_at = COALESCE(sent_at, $5), attempts = attempts - $6
             WHERE id = $7 AND status = $8 AND attempts = $9",
        )
        .bind(a.status)
        .bind(serde_json::to_string(&a.results).expect("results serialise"))
        .bind(a.error.as_deref().map(capped))
        .bind(a.retry_at)
        .bind(a.any_sent().then_some(at))
        .bind(i32::from(!a.counted));
        let done = q
            .bind(email.id)
            .bind(EmailStatus::Sending)
            .bind(email.attempts as i32)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_emails(&self, status: Option<EmailStatus>, limit: u32) -> Result<Vec<EmailRow>> {
        let rows = sqlx::query(
            "SELECT * FROM outbox WHERE ($1::text IS NULL OR status = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(status)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(email_row).collect()
    }

    async fn requeue_sending_emails(&self) -> Result<u64> {
        // Only emails whose sender's hold ran out (by the database's clock):
        // one another daemon is sending now stays its own. A send is bounded
        // by the mailer's timeouts, far below the hold.
        let done = sqlx::query(
            "UPDATE outbox SET status = $1, sending_until = NULL
             WHERE status = $2 AND sending_until <= now()",
        )
        .bind(EmailStatus::Queued)
        .bind(EmailStatus::Sending)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
