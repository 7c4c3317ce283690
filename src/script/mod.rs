//! The hardened Rhai sandbox and the script API it exposes.
//!
//! One engine configuration ([`Sandbox`]) is used to compile and to run every
//! script. Scripts reach the world only through the [`Host`] trait; this module
//! knows nothing of SQL or HTTP.

mod api;
mod convert;
mod effects;
mod engine;
mod host;
mod memory;
mod resolver;
mod thread;
mod time;

pub use convert::{from_json, to_json};
pub use engine::{
    CompileError, CompiledScript, Compiler, EvalRequest, FailureKind, Limits, Sandbox,
    ScriptFailure,
};
pub use host::{Host, HostHandle, HttpBody, HttpCall, LogLevel};
pub use resolver::read_script;
pub use thread::started_with_stack;

/// The stack a thread needs to run scripts under the default limits
/// (see `thread.rs`): give the runtime's threads this much, and mark them
/// with [`started_with_stack`], and scripts run on them directly.
pub fn script_stack_bytes() -> usize {
    thread::stack_bytes(&Limits::default())
}
pub use time::{Span, Timestamp};

/// The names a script can read without declaring them.
pub const CONTEXT_VARIABLES: &[&str] = &["params", "trigger", "run", "steps"];
