//! The statuses and kinds the store records, each an enum whose names are
//! derived once (serde for JSON, sqlx for columns, strum for text and the
//! list of names): code and SQL bind these values, never a literal of their own.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray, VariantNames};

/// What filters and messages need of any stored name.
pub trait StoredName: Sized + Copy {
    /// The type's name, for messages.
    const WHAT: &'static str;
    fn parse(s: &str) -> Option<Self>;
    fn names() -> &'static [&'static str];

    /// The value `given` names, or the sentence every caller reports:
    /// `{what} "given" is not one of a, b, c`.
    fn named(what: &str, given: &str) -> Result<Self, String> {
        Self::parse(given).ok_or_else(|| {
            format!(
                "{what} \"{given}\" is not one of {}",
                Self::names().join(", ")
            )
        })
    }
}

/// The derives every stored name shares; `$t` is its name in snake_case.
macro_rules! stored_name {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(Serialize, Deserialize, Display, EnumString, IntoStaticStr, VariantNames, VariantArray)]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// The stored name.
            pub fn as_str(self) -> &'static str {
                self.into()
            }

            /// The value a stored name stands for; `None` for any other text.
            pub fn parse(s: &str) -> Option<Self> {
                s.parse().ok()
            }

            /// Every stored name, in declaration order (for messages that list them).
            pub fn names() -> &'static [&'static str] {
                <Self as VariantNames>::VARIANTS
            }
        }

        // A text column on every backend: stored as its name, read back by it.
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let name = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok(<Self as StoredName>::named(<Self as StoredName>::WHAT, name)?)
            }
        }

        impl StoredName for $name {
            const WHAT: &'static str = stringify!($name);
            fn parse(s: &str) -> Option<Self> {
                $name::parse(s)
            }
            fn names() -> &'static [&'static str] {
                $name::names()
            }
        }
    };
}

stored_name! {
    /// SPEC §4. `queued → running → succeeded | failed | timed_out | cancelled`,
    /// plus the firings that did not run: `skipped`, `missed`, `throttled`, and
    /// `interrupted` when the process died or shut down, and `abandoned` when
    /// that happened to a run more than [`crate::run::MAX_RESCUES`] times.
    pub enum RunStatus {
        Queued,
        Running,
        Succeeded,
        Failed,
        TimedOut,
        Cancelled,
        Skipped,
        Missed,
        Throttled,
        Interrupted,
        Abandoned,
    }
}

impl RunStatus {
    /// A run in one of these has not ended.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    /// Firings recorded without running (they do not count against `limit:`).
    pub const NOT_RUN: [RunStatus; 3] =
        [RunStatus::Throttled, RunStatus::Skipped, RunStatus::Missed];
}

stored_name! {
    /// What fired a run.
    pub enum TriggerKind {
        /// A person: the CLI, the API or the UI.
        Manual,
        /// A `cron:` trigger's slot.
        Cron,
        /// An `every:` trigger's slot.
        Every,
        /// A webhook delivery.
        Webhook,
    }
}

stored_name! {
    /// What became of a webhook delivery.
    pub enum DeliveryOutcome {
        /// It made a run (queued, or skipped under `forbid`).
        Accepted,
        /// The same delivery came within the dedup window; nothing new ran.
        Duplicate,
        /// `when:` was false.
        Filtered,
        /// The runbook's `limit:` was reached: a throttled run was recorded.
        Throttled,
        /// It could not be read or judged (a bad body, a failing `dedup:` or `when:`).
        Rejected,
    }
}

stored_name! {
    /// Where an issue stands.
    pub enum IssueStatus {
        Open,
        Acknowledged,
        Resolved,
    }
}

impl IssueStatus {
    /// Open or acknowledged: still someone's problem.
    pub const UNRESOLVED: [IssueStatus; 2] = [IssueStatus::Open, IssueStatus::Acknowledged];
}

stored_name! {
    /// How bad an issue is, worst first.
    pub enum Severity {
        Critical,
        High,
        Medium,
        Low,
        Info,
    }
}

stored_name! {
    /// Where an email of the outbox stands (docs/email-and-issues.md): `queued →
    /// sending`, back to `queued` while a recipient is to be tried again,
    /// then one of the four ends.
    pub enum EmailStatus {
        Queued,
        Sending,
        /// Every recipient accepted it.
        Sent,
        /// Some recipients accepted it; the others refused it for good.
        Partial,
        /// No recipient accepted it.
        Failed,
        /// The connection was lost after the message was handed over, twice
        /// for a recipient: the server may or may not have it.
        Ambiguous,
    }
}

stored_name! {
    /// What became of one recipient of an email, as its latest attempt left it.
    pub enum RecipientStatus {
        /// The server accepted the message for it.
        Sent,
        /// Refused for now (4xx) or not reached: it is tried again.
        Deferred,
        /// Refused for good (5xx), or still deferred after the last attempt.
        Failed,
        /// The connection was lost after the message was handed over: the
        /// server may have it. Tried again once; a second such loss ends it.
        Ambiguous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for s in <RunStatus as VariantArray>::VARIANTS {
            assert_eq!(RunStatus::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(RunStatus::TimedOut.to_string(), "timed_out");
        assert_eq!(TriggerKind::parse("every"), Some(TriggerKind::Every));
        assert_eq!(Severity::parse("bogus"), None);
        assert_eq!(
            EmailStatus::names(),
            &[
                "queued",
                "sending",
                "sent",
                "partial",
                "failed",
                "ambiguous"
            ]
        );
    }
}
