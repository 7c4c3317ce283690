//! Scheduling: what a schedule means (`slots`), and the scheduler that turns
//! due slots into runs exactly once.

pub mod slots;
