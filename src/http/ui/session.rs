//! The sessions of people signed in to the UI: random ids (kept only as
//! their SHA-256, so a lookup's timing says nothing about them), each with
//! its own CSRF token, ending after [`SESSION_TTL`] or at sign out, at most
//! [`MAX_SESSIONS`] at once. They live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a sign-in lasts, whatever the activity.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once; the oldest goes first.
pub const MAX_SESSIONS: usize = 1000;
struct Session {
    expires: Instant,
    csrf: String,
}

/// The sessions of signed-in people, keyed by the SHA-256 of their id (so a
/// lookup's timing says nothing about the ids).
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
    /// The CSRF token of every form when no API token is set.
    pub open_csrf: String,
}

fn random_token() -> String {
    // Two v4 UUIDs: 244 bits from the operating system's generator.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new() -> Self {
        Sessions {
            live: Mutex::new(HashMap::new()),
            open_csrf: random_token(),
        }
    }

    /// Start a session; returns its id (for the cookie).
    pub fn start(&self) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut live = self.live.lock().expect("sessions lock");
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            live.remove(&oldest);
        }
        live.insert(
            digest(&id),
            Session {
                expires: now + SESSION_TTL,
                csrf: random_token(),
            },
        );
        id
    }

    /// The CSRF token of a live session.
    pub fn csrf(&self, id: &str) -> Option<String> {
        let live = self.live.lock().expect("sessions lock");
        live.get(&digest(id))
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    pub fn end(&self, id: &str) {
        self.live.lock().expect("sessions lock").remove(&digest(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_and_are_unguessable() {
        let s = Sessions::new();
        let id = s.start();
        assert_eq!(id.len(), 64);
        let csrf = s.csrf(&id).expect("live");
        assert_ne!(csrf, id);
        assert!(s.csrf("0".repeat(64).as_str()).is_none());
        s.end(&id);
        assert!(s.csrf(&id).is_none());
    }
}
