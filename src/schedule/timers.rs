//! The scheduler's one timer: the next fire time of every armed trigger,
//! earliest first, and how long the scheduler may sleep before it reads the
//! wall clock again. Plain bookkeeping over UTC times, so it is tested
//! without a clock; the scheduler does the sleeping.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest the scheduler sleeps before it reads the wall clock again. A
/// sleep is measured on the monotonic clock, which does not follow a step of
/// the system clock (NTP, a resumed suspend); waking at least this often
/// notices a forward jump within this long.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);

/// One fire time per key; a key set again moves, it is never queued twice.
#[derive(Debug)]
pub struct Timers<K> {
    at: HashMap<K, DateTime<Utc>>,
    queue: BTreeSet<(DateTime<Utc>, K)>,
}

impl<K: Ord + Hash + Clone> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            at: HashMap::new(),
            queue: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Timers<K> {
    /// Arm `key` at `at`, or disarm it with `None`, replacing what it had.
    pub fn set(&mut self, key: &K, at: Option<DateTime<Utc>>) {
        if let Some(old) = self.at.remove(key) {
            self.queue.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            self.at.insert(key.clone(), at);
            self.queue.insert((at, key.clone()));
        }
    }

    /// Disarm and return every key due at or before `now`, earliest first.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first()
            && *at <= now
        {
            let (_, key) = self.queue.pop_first().expect("a first entry");
            self.at.remove(&key);
            due.push(key);
        }
        due
    }

    /// How long to sleep from `now`: until the earliest fire time, but never
    /// longer than [`MAX_SLEEP`]; zero when something is already due.
    pub fn wait(&self, now: DateTime<Utc>) -> Duration {
        match self.queue.first() {
            Some((at, _)) => (*at - now).to_std().unwrap_or_default().min(MAX_SLEEP),
            None => MAX_SLEEP,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn keys_come_due_in_time_order_once_each() {
        let mut timers = Timers::default();
        timers.set(&"b", Some(t(2)));
        timers.set(&"a", Some(t(1)));
        timers.set(&"c", Some(t(10)));
        assert_eq!(timers.take_due(t(0)), Vec::<&str>::new());
        assert_eq!(timers.take_due(t(5)), vec!["a", "b"]);
        assert_eq!(timers.take_due(t(5)), Vec::<&str>::new());
        assert_eq!(timers.take_due(t(10)), vec!["c"]);
    }

    #[test]
    fn setting_a_key_again_moves_it_and_none_disarms_it() {
        let mut timers = Timers::default();
        timers.set(&"a", Some(t(1)));
        timers.set(&"a", Some(t(3)));
        timers.set(&"b", Some(t(2)));
        timers.set(&"b", None);
        assert_eq!(timers.take_due(t(2)), Vec::<&str>::new());
        assert_eq!(timers.take_due(t(3)), vec!["a"]);
    }

    #[test]
    fn the_sleep_is_capped_so_a_wall_clock_jump_is_noticed() {
        let mut timers = Timers::default();
        assert_eq!(timers.wait(t(0)), MAX_SLEEP);
        timers.set(&"soon", Some(t(0) + TimeDelta::milliseconds(250)));
        assert_eq!(timers.wait(t(0)), Duration::from_millis(250));
        timers.set(&"soon", Some(t(3600)));
        // An hour away, yet the scheduler looks at the clock again within a
        // second: if the clock has jumped forward past the slot by then,
        // the slot is due.
        assert_eq!(timers.wait(t(0)), MAX_SLEEP);
        assert_eq!(timers.take_due(t(3601)), vec!["soon"]);
        // Already due, or the clock stepped back: no negative sleep.
        timers.set(&"late", Some(t(0)));
        assert_eq!(timers.wait(t(5)), Duration::ZERO);
    }
}
