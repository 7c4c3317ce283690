//! What a delivery attempt makes of an email, as pure functions of the row
//! and the server's replies: each recipient's new result, whether the email
//! is tried again (and when), and where it ends. The rules are stated in
//! docs/email-and-issues.md; the tests below pin them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::smtp::Reply;
use crate::store::{EmailAttempt, EmailRow, EmailStatus, RecipientResult, RecipientStatus};

/// After this many attempts an email is tried no more.
pub const MAX_ATTEMPTS: i64 = 12;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// The wait while the server refuses our login: long, since nothing changes
/// until a person updates the credentials.
pub const LOGIN_HOLD: Duration = Duration::from_secs(15 * 60);

/// The recipients an attempt of `email` should try: those never tried, refused
/// for now, or lost after DATA once.
pub fn to_try(email: &EmailRow) -> Vec<String> {
    email
        .recipients()
        .filter(|r| email.results.get(*r).is_none_or(RecipientResult::to_try))
        .cloned()
        .collect()
}

/// The attempt `replies` make of `email` at `now`; `retry_delay` is the
/// first wait, doubled for each attempt after it.
pub fn settle(
    email: &EmailRow,
    replies: BTreeMap<String, Reply>,
    now: DateTime<Utc>,
    retry_delay: Duration,
) -> EmailAttempt {
    let mut results = email.results.clone();
    for (who, reply) in replies {
        let next = after(results.remove(&who), reply);
        results.insert(who, next);
    }
    let last = email.attempts >= MAX_ATTEMPTS;
    if last {
        give_up(&mut results, email.attempts);
    }
    let again = !last && results.values().any(RecipientResult::to_try);
    let status = if again {
        EmailStatus::Queued
    } else {
        end(&results)
    };
    EmailAttempt {
        status,
        error: summary(&results),
        retry_at: again.then(|| now + backoff(retry_delay, email.attempts)),
        results,
        counted: true,
    }
}

/// Every recipient still to be tried fails with `error` (the message
/// cannot be built).
pub fn unsendable(email: &EmailRow, error: &str, now: DateTime<Utc>) -> EmailAttempt {
    let replies = to_try(email)
        .into_iter()
        .map(|r| (r, Reply::Permanent(error.to_string())))
        .collect();
    settle(email, replies, now, Duration::ZERO)
}

/// The server refused our login: `email` waits [`LOGIN_HOLD`], its results
/// untouched and the attempt not counted.
pub fn hold(email: &EmailRow, refusal: &str, now: DateTime<Utc>) -> EmailAttempt {
    EmailAttempt {
        status: EmailStatus::Queued,
        results: email.results.clone(),
        error: Some(format!(
            "held: the mail server refused our login ({refusal}); tried again every {} minutes",
            LOGIN_HOLD.as_secs() / 60
        )),
        retry_at: Some(now + TimeDelta::from_std(LOGIN_HOLD).unwrap_or_default()),
        counted: false,
    }
}

/// A recipient's result after `reply`, given its result before.
fn after(before: Option<RecipientResult>, reply: Reply) -> RecipientResult {
    let (attempts, ambiguous) = before.map_or((0, 0), |b| (b.attempts, b.ambiguous));
    let (status, reply, lost) = match reply {
        Reply::Accepted(s) => (RecipientStatus::Sent, s, 0),
        Reply::Temporary(s) => (RecipientStatus::Deferred, s, 0),
        Reply::Permanent(s) => (RecipientStatus::Failed, s, 0),
        Reply::Lost(s) => (RecipientStatus::Ambiguous, s, 1),
    };
    RecipientResult {
        status,
        reply,
        attempts: attempts + 1,
        ambiguous: ambiguous + lost,
    }
}

/// The last attempt is over: a recipient still refused for now fails.
fn give_up(results: &mut crate::store::Recipients, attempts: i64) {
    for r in results.values_mut() {
        if r.status == RecipientStatus::Deferred {
            r.status = RecipientStatus::Failed;
            r.reply = format!("{} (gave up after {attempts} attempts)", r.reply);
        }
    }
}

/// Where an email ends when no recipient is left to try.
fn end(results: &crate::store::Recipients) -> EmailStatus {
    let has = |s: RecipientStatus| results.values().any(|r| r.status == s);
    if results.values().all(|r| r.status == RecipientStatus::Sent) {
        EmailStatus::Sent
    } else if has(RecipientStatus::Ambiguous) {
        EmailStatus::Ambiguous
    } else if has(RecipientStatus::Sent) {
        EmailStatus::Partial
    } else {
        EmailStatus::Failed
    }
}

/// The recipients that have not got it, with what the server said.
fn summary(results: &crate::store::Recipients) -> Option<String> {
    let unsent: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.status != RecipientStatus::Sent)
        .map(|(who, r)| format!("{who}: {} — {}", r.status, r.reply))
        .collect();
    (!unsent.is_empty()).then(|| unsent.join("; "))
}

fn backoff(first: Duration, attempts: i64) -> TimeDelta {
    let doublings = (attempts - 1).clamp(0, 16) as u32;
    let wait = first
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(MAX_BACKOFF);
    TimeDelta::from_std(wait).unwrap_or_default()
}

#[cfg(test)]
mod tests;
