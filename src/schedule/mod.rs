//! Scheduling: what a schedule means (`slots`), and the scheduler that turns
//! due slots into runs exactly once.

mod scheduler;
pub mod slots;
mod timers;

pub use scheduler::{Scheduler, SchedulerHandle, TriggerId};
