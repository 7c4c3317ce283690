//! The mailer: takes due emails from the outbox and delivers them over SMTP.
//! Temporary failures (4xx, connection trouble) are retried with backoff;
//! permanent ones (5xx) fail at once. Every outcome is written back.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Smtp;
use crate::secrets::Secrets;
use crate::store::{EmailAttempt, EmailRow, Store};

/// After this many attempts a message fails for good.
pub const MAX_ATTEMPTS: i64 = 12;
/// One SMTP conversation may take this long (lettre's own timeout only bounds connecting).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Mailer {
    store: Arc<dyn Store>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    retry_delay: Duration,
    /// Wakes the loop when a run queues an email.
    pub wake: Arc<Notify>,
}

impl Mailer {
    /// Build the mailer for `smtp`.
    ///
    /// Fails on an unreadable URL, an unknown `tls` mode or a missing credential.
    pub fn new(store: Arc<dyn Store>, smtp: &Smtp, secrets: &Secrets) -> Result<Self, String> {
        let url =
            url::Url::parse(&smtp.url).map_err(|e| format!("smtp.url \"{}\": {e}", smtp.url))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("smtp.url \"{}\" has no host", smtp.url))?
            .to_string();
        let tls = smtp.tls.clone().unwrap_or_else(|| {
            if url.scheme() == "smtps" {
                "tls".into()
            } else {
                "starttls".into()
            }
        });
        let port = url.port().unwrap_or(if tls == "tls" { 465 } else { 587 });
        let params =
            || TlsParameters::new(host.clone()).map_err(|e| format!("smtp: TLS for {host}: {e}"));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .timeout(Some(Duration::from_secs(20)));
        builder = match tls.as_str() {
            "starttls" => builder.tls(Tls::Required(params()?)),
            "tls" => builder.tls(Tls::Wrapper(params()?)),
            "none" => builder.tls(Tls::None),
            other => {
                return Err(format!(
                    "smtp.tls \"{other}\": expected starttls, tls or none"
                ));
            }
        };
        if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
            let user = secrets
                .get(u)
                .ok_or_else(|| format!("smtp.username: secret {u} is not set"))?;
            let pass = secrets
                .get(p)
                .ok_or_else(|| format!("smtp.password: secret {p} is not set"))?;
            builder = builder.credentials(Credentials::new(user, pass));
        }
        let retry_delay = match &smtp.retry_delay {
            Some(d) => crate::duration::parse(d).map_err(|e| format!("smtp.retry_delay: {e}"))?,
            None => Duration::from_secs(30),
        };
        Ok(Mailer {
            store,
            transport: builder.build(),
            retry_delay,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Deliver every due email once. Returns how many were attempted.
    pub async fn pass(&self) -> usize {
        // Shared with other daemons, each taken email is held for 10 minutes:
        // take no more than can be sent within that at one SMTP timeout each.
        let batch = if self.store.sole_writer() { 50 } else { 5 };
        let due = match self.store.take_due_emails(crate::clock::now(), batch).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "could not read the outbox");
                return 0;
            }
        };
        for email in &due {
            let attempt = self.deliver(email).await;
            let status = match &attempt {
                EmailAttempt::Sent { .. } => "sent",
                EmailAttempt::Retry { .. } => "retrying",
                EmailAttempt::Failed { .. } => "failed",
            };
            metrics::counter!(crate::telemetry::EMAILS, "status" => status).increment(1);
            match &attempt {
                EmailAttempt::Sent { .. } => {
                    tracing::info!(email.id = email.id, runbook = %email.runbook, "email sent")
                }
                EmailAttempt::Retry { error, .. } => {
                    tracing::warn!(email.id = email.id, error = %error, "email not sent yet; will retry")
                }
                EmailAttempt::Failed { error } => {
                    tracing::error!(email.id = email.id, error = %error, "email failed")
                }
            }
            match self
                .store
                .finish_email(email, &attempt, crate::clock::now())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        email.id = email.id,
                        "this email's hold expired while it was being sent; another daemon may send it again"
                    )
                }
                Err(e) => {
                    tracing::error!(email.id = email.id, error = %e, "could not record an email's delivery")
                }
            }
        }
        due.len()
    }

    async fn requeue_abandoned(&self) {
        if let Ok(n) = self.store.requeue_sending_emails().await
            && n > 0
        {
            tracing::warn!(
                emails = n,
                "emails left sending by a stopped process are queued again"
            );
        }
    }

    /// Deliver until `stop`: at once when woken, and every few seconds for
    /// retries. Emails a stopped process left `sending` are queued again at
    /// start, and every minute when other daemons share the store.
    pub async fn run(self, stop: CancellationToken) {
        let mut requeued_at = std::time::Instant::now();
        self.requeue_abandoned().await;
        loop {
            if !self.store.sole_writer() && requeued_at.elapsed() >= Duration::from_secs(60) {
                requeued_at = std::time::Instant::now();
                self.requeue_abandoned().await;
            }
            while self.pass().await > 0 {}
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    async fn deliver(&self, email: &EmailRow) -> EmailAttempt {
        let message = match build(email) {
            Ok(m) => m,
            Err(error) => return EmailAttempt::Failed { error },
        };
        let sent = tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await;
        let retry = |error: String| {
            if email.attempts >= MAX_ATTEMPTS {
                return EmailAttempt::Failed {
                    error: format!("{error} (gave up after {} attempts)", email.attempts),
                };
            }
            let wait = self
                .retry_delay
                .saturating_mul(2u32.saturating_pow((email.attempts - 1).clamp(0, 16) as u32))
                .min(Duration::from_secs(3600));
            EmailAttempt::Retry {
                error,
                at: crate::clock::now() + TimeDelta::from_std(wait).unwrap_or_default(),
            }
        };
        match sent {
            Err(_) => retry("the mail server did not answer in time".into()),
            Ok(Ok(resp)) => {
                let said = format!(
                    "{} {}",
                    resp.code(),
                    resp.message().collect::<Vec<_>>().join(" ")
                );
                let results: serde_json::Map<String, serde_json::Value> = email
                    .to
                    .iter()
                    .chain(email.cc.iter())
                    .map(|r| {
                        (
                            r.clone(),
                            serde_json::Value::String(format!("accepted: {said}")),
                        )
                    })
                    .collect();
                EmailAttempt::Sent {
                    results: serde_json::Value::Object(results),
                }
            }
            Ok(Err(e)) if e.is_permanent() => EmailAttempt::Failed {
                error: format!("the mail server refused it: {e}"),
            },
            Ok(Err(e)) => retry(format!("{e}")),
        }
    }
}

/// The MIME message for an outbox row: multipart when it has both parts.
fn build(e: &EmailRow) -> Result<Message, String> {
    let mbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|err| format!("\"{a}\" is not an address: {err}"))
    };
    let mut b = Message::builder()
        .from(mbox(&e.sender)?)
        .subject(e.subject.clone())
        .message_id(None);
    for t in &e.to {
        b = b.to(mbox(t)?);
    }
    for c in &e.cc {
        b = b.cc(mbox(c)?);
    }
    let built = match (&e.text, &e.html) {
        (Some(t), Some(h)) => b.multipart(MultiPart::alternative_plain_html(t.clone(), h.clone())),
        (Some(t), None) => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(t.clone()),
        ),
        (None, Some(h)) => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(h.clone()),
        ),
        (None, None) => return Err("the message has no body".into()),
    };
    built.map_err(|err| format!("the message cannot be built: {err}"))
}
