//! Where a script runs: a thread of its own, with a stack deep enough for any
//! value the sandbox lets a script build.
//!
//! Printing, comparing, copying or dropping a nested value recurses once per
//! level, in the engine, where no limit applies. The data limits bound the
//! depth (a value nested N levels holds N arrays or maps, and a script holds at
//! most `max_array_size` + `max_map_size` of them), so the stack is sized for
//! that bound and an overflow cannot happen; the stack is address space,
//! touched only as deep as a script's values go, and unmapped when it ends.

use std::cell::Cell;

use super::Limits;

thread_local! {
    /// The stack the current thread was started with, when it is known to
    /// be roomy (the daemon's runtime threads); 0 when unknown.
    static STACK: Cell<usize> = const { Cell::new(0) };
}

/// Record that the current thread has a stack of `bytes`: scripts whose
/// limits need no more run on it directly, without a thread of their own
/// (called when the runtime starts each of its threads).
pub fn started_with_stack(bytes: usize) {
    STACK.with(|s| s.set(bytes));
}

/// Stack bytes one level of nesting may need, measured with margin (about
/// 1.5 KiB in a debug build for `"" + a`, `a == a` and `print(a)`).
const BYTES_PER_LEVEL: usize = 4 * 1024;
/// Stack for everything but the nesting: the engine's own call levels.
const BASE_STACK: usize = 64 * 1024 * 1024;

/// The stack a script thread gets under `limits`.
pub fn stack_bytes(limits: &Limits) -> usize {
    BASE_STACK + (limits.max_array_size + limits.max_map_size) * BYTES_PER_LEVEL
}

/// Run `f` with a stack of at least `stack` bytes: here, when this thread
/// has one (starting a thread per script costs more than most scripts), else
/// on a new thread, and wait for it; a panic in `f` resumes on the caller.
///
/// Fails when the thread cannot be started (no address space left).
pub fn run_on_own_stack<T: Send>(stack: usize, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    if STACK.with(Cell::get) >= stack {
        return Ok(f());
    }
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name("script".into())
            .stack_size(stack)
            .spawn_scoped(s, f)?;
        Ok(thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}
