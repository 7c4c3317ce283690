//! The mailer: takes due emails from the outbox and delivers each to the
//! recipients still to be tried, then records every recipient's result
//! (rules in `outcome`, docs/email-and-issues.md). It also owns the operator's issue
//! `runbookd:smtp-login`: opened while the server refuses our login (the
//! emails are held, not failed), resolved when a login succeeds again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lettre::message::Mailbox;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::message::build;
use super::outcome::{self, LOGIN_HOLD};
use super::smtp::{Conversation, Login, Server};
use crate::config::Smtp;
use crate::secrets::Secrets;
use crate::store::{EmailAttempt, EmailRow, EmailStatus, IssueOpen, Severity, Store};

/// One SMTP conversation may take this long (connecting is bounded apart).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The operator's issue while the mail server refuses our login.
pub const LOGIN_ISSUE: &str = "runbookd:smtp-login";

pub struct Mailer {
    store: Arc<dyn Store>,
    server: Server,
    retry_delay: Duration,
    /// Whether [`LOGIN_ISSUE`] may be open: true at start (a previous
    /// process may have opened it) and after a refusal; the next accepted
    /// login resolves it and clears this.
    login_issue: AtomicBool,
    /// Wakes the loop when a run queues an email.
    pub wake: Arc<Notify>,
}

impl Mailer {
    /// Build the mailer for `smtp`.
    ///
    /// Fails on an unreadable URL, an unknown `tls` mode or a missing credential.
    pub fn new(store: Arc<dyn Store>, smtp: &Smtp, secrets: &Secrets) -> Result<Self, String> {
        let retry_delay = match &smtp.retry_delay {
            Some(d) => crate::duration::parse(d).map_err(|e| format!("smtp.retry_delay: {e}"))?,
            None => Duration::from_secs(30),
        };
        Ok(Mailer {
            store,
            server: Server::new(smtp, secrets)?,
            retry_delay,
            login_issue: AtomicBool::new(true),
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
        // Once the server refuses our login, the rest of the batch is held
        // without trying again: repeated bad logins can lock the account.
        let mut refusal: Option<String> = None;
        for email in &due {
            let attempt = match &refusal {
                Some(r) => outcome::hold(email, r, crate::clock::now()),
                None => {
                    let (attempt, refused) = self.attempt(email).await;
                    refusal = refused;
                    attempt
                }
            };
            self.record(email, &attempt).await;
        }
        due.len()
    }

    /// One attempt of `email`, and the server's refusal of our login if it
    /// refused it.
    async fn attempt(&self, email: &EmailRow) -> (EmailAttempt, Option<String>) {
        let out = match outgoing(email) {
            Ok(out) => out,
            Err(error) => {
                let failed = outcome::unsendable(email, &error, crate::clock::now());
                return (failed, None);
            }
        };
        let Conversation { login, replies } = self
            .server
            .deliver(&out.from, &out.recipients, &out.bytes, SEND_TIMEOUT)
            .await;
        match login {
            Login::Refused(refusal) => {
                self.login_refused(&refusal).await;
                let held = outcome::hold(email, &refusal, crate::clock::now());
                (held, Some(refusal))
            }
            Login::Accepted | Login::NotTried => {
                if login == Login::Accepted {
                    self.login_accepted().await;
                }
                let now = crate::clock::now();
                (outcome::settle(email, replies, now, self.retry_delay), None)
            }
        }
    }

    async fn login_refused(&self, refusal: &str) {
        self.login_issue.store(true, Ordering::SeqCst);
        let issue = IssueOpen {
            runbook: "runbookd".into(),
            key: LOGIN_ISSUE.into(),
            title: "The mail server refuses runbookd's login: email is held".into(),
            severity: Severity::High,
            details: Some(format!(
                "The server answered: {refusal}. Queued emails wait and are tried again every {} minutes; \
                 update the secrets named by smtp.username and smtp.password (docs/email-and-issues.md).",
                LOGIN_HOLD.as_secs() / 60
            )),
            link: None,
            at: crate::clock::now(),
        };
        tracing::error!(error = %refusal, "the mail server refused our login; email is held");
        if let Err(e) = self.store.open_issue(None, &issue).await {
            tracing::error!(error = %e, "could not open the issue for the refused mail login");
        }
    }

    async fn login_accepted(&self) {
        if !self.login_issue.swap(false, Ordering::SeqCst) {
            return;
        }
        let note = Some("the mail server accepted the login again");
        match self
            .store
            .resolve_issue(None, LOGIN_ISSUE, note, crate::clock::now())
            .await
        {
            Ok(true) => tracing::info!("the mail server accepts our login again"),
            Ok(false) => {}
            Err(e) => {
                self.login_issue.store(true, Ordering::SeqCst);
                tracing::error!(error = %e, "could not resolve the issue for the refused mail login");
            }
        }
    }

    /// Log, count and write back what became of `email`.
    async fn record(&self, email: &EmailRow, attempt: &EmailAttempt) {
        let label = log_outcome(email, attempt);
        metrics::counter!(crate::telemetry::EMAILS, "status" => label).increment(1);
        match self
            .store
            .finish_email(email, attempt, crate::clock::now())
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
}

/// What one attempt hands to the server.
struct Outgoing {
    /// The message, headers included.
    bytes: Vec<u8>,
    /// The envelope sender.
    from: lettre::Address,
    /// The recipients to try, by the name the outbox knows them by.
    recipients: Vec<(String, lettre::Address)>,
}

/// What an attempt of `email` hands to the server.
///
/// Fails on an address that does not parse or a row without a body.
fn outgoing(email: &EmailRow) -> Result<Outgoing, String> {
    let address = |a: &str| {
        a.parse::<Mailbox>()
            .map(|m| m.email)
            .map_err(|err| format!("\"{a}\" is not an address: {err}"))
    };
    let recipients = outcome::to_try(email)
        .into_iter()
        .map(|r| address(&r).map(|a| (r, a)))
        .collect::<Result<_, _>>()?;
    Ok(Outgoing {
        bytes: build(email)?.formatted(),
        from: address(&email.sender)?,
        recipients,
    })
}

/// Log what became of `email` at the level it deserves; returns the
/// metric's label for it.
fn log_outcome(email: &EmailRow, attempt: &EmailAttempt) -> &'static str {
    let (id, runbook) = (email.id, &email.runbook);
    let error = attempt.error.as_deref().unwrap_or_default();
    match attempt.status {
        _ if !attempt.counted => {
            tracing::warn!(
                email.id = id,
                error,
                "email held: the mail server refuses our login"
            );
            "held"
        }
        EmailStatus::Sent => {
            tracing::info!(email.id = id, runbook = %runbook, "email sent");
            "sent"
        }
        EmailStatus::Partial => {
            tracing::warn!(email.id = id, runbook = %runbook, error, "email sent to some recipients; the others refused it");
            "partial"
        }
        EmailStatus::Ambiguous => {
            tracing::error!(email.id = id, runbook = %runbook, error, "email ambiguous: the connection was lost after the message, twice");
            "ambiguous"
        }
        EmailStatus::Failed => {
            tracing::error!(email.id = id, runbook = %runbook, error, "email failed");
            "failed"
        }
        EmailStatus::Queued | EmailStatus::Sending => {
            tracing::warn!(email.id = id, error, "email not sent yet; will retry");
            "retrying"
        }
    }
}
