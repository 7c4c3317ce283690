//! Scheduling: what a schedule means (`slots`), the scheduler that turns
//! due slots into runs exactly once, and a runbook as listings show it with
//! its next fire time (`summary`).

mod scheduler;
pub mod slots;
pub mod summary;
mod timers;

pub use scheduler::{Scheduler, SchedulerHandle, TriggerId};
