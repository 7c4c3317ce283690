//! The outbox's row types: an email as queued, as recorded, per recipient,
//! and what one delivery attempt made of it. Shared by every backend.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RunId;
use super::kinds::{EmailStatus, RecipientStatus};

/// An email a script asked to send.
#[derive(Debug, Clone)]
pub struct NewEmail {
    pub idem_key: String,
    pub runbook: String,
    pub run_id: Option<RunId>,
    pub sender: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The Message-ID every attempt sends (`<...@...>`): chosen once, so a
    /// copy delivered twice is recognisably the same message.
    pub message_id: String,
    pub at: DateTime<Utc>,
}

/// What became of one recipient, as the latest attempt that tried it left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientResult {
    pub status: RecipientStatus,
    /// What the server answered for it, or what went wrong on the way.
    pub reply: String,
    /// Attempts that tried this recipient.
    pub attempts: u32,
    /// Of those, the attempts whose connection was lost after the message
    /// was handed over (each may have delivered a copy).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ambiguous: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl RecipientResult {
    /// Whether a later attempt should try this recipient: refused for now,
    /// or lost after DATA once.
    pub fn to_try(&self) -> bool {
        match self.status {
            RecipientStatus::Deferred => true,
            RecipientStatus::Ambiguous => self.ambiguous < 2,
            RecipientStatus::Sent | RecipientStatus::Failed => false,
        }
    }
}

/// Per recipient (to and cc), what became of it; a recipient not yet tried
/// has no entry.
pub type Recipients = BTreeMap<String, RecipientResult>;

#[derive(Debug, Clone, Serialize)]
pub struct EmailRow {
    pub id: i64,
    pub runbook: String,
    pub run_id: Option<RunId>,
    pub sender: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub message_id: String,
    pub status: EmailStatus,
    /// Delivery attempts so far (an attempt held while the server refused
    /// our login does not count).
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub results: Recipients,
    pub created_at: DateTime<Utc>,
    /// When a first recipient accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

impl EmailRow {
    /// Every recipient, to then cc.
    pub fn recipients(&self) -> impl Iterator<Item = &String> {
        self.to.iter().chain(self.cc.iter())
    }
}

/// How a delivery attempt of an email ended, to be recorded by
/// [`super::OutboxStore::finish_email`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmailAttempt {
    /// `Queued` to be tried again at `retry_at`, or where it ended.
    pub status: EmailStatus,
    /// Every recipient's result after this attempt.
    pub results: Recipients,
    /// What went wrong, for people; `None` when all went well.
    pub error: Option<String>,
    /// When to try again (`status` is `Queued`).
    pub retry_at: Option<DateTime<Utc>>,
    /// False when the attempt was held before it could try anyone (the
    /// server refused our login): it does not count against the attempts.
    pub counted: bool,
}

impl EmailAttempt {
    /// Whether some recipient has accepted it by now.
    pub fn any_sent(&self) -> bool {
        self.results
            .values()
            .any(|r| r.status == RecipientStatus::Sent)
    }
}

/// Stored results as written by [`super::OutboxStore::finish_email`]; rows
/// from before per-recipient delivery read as none.
pub fn parse_results(stored: Option<String>) -> Recipients {
    stored
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}
