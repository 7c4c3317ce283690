//! How much memory a script holds: the process's allocator counts, per thread,
//! the bytes allocated and not yet freed, and a script's engine stops it once
//! the thread it runs on holds more than its
//! budget.
//!
//! Calls into the daemon are not counted ([`uncounted`], used by
//! `HostHandle`): the daemon hands what it allocates to other threads (the
//! database's, the runtime's), and a count that never saw those frees would
//! grow with every call until a long-running script was stopped for memory it
//! does not hold. What a call returns counts once the script holds it.
//!
//! Per-value limits (16 MiB strings, 100,000-item arrays) let a script hold
//! many large values at once; this bound is on all of them together. Counting
//! costs one thread-local addition per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes this thread allocated minus bytes it freed (a thread that frees
    /// what another allocated goes below zero; only differences matter).
    static HELD: Cell<isize> = const { Cell::new(0) };
}

/// The system allocator, counting per thread.
pub struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; the count is
// a const-initialised thread-local that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count(delta: isize) {
    // try_with: a thread being torn down has no count left to keep.
    let _ = HELD.try_with(|h| h.set(h.get().wrapping_add(delta)));
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Run `f` without counting what it allocates and frees on this thread: a
/// call into the daemon, whose allocations may be freed by another thread
/// (and would otherwise look held by the script forever).
pub fn uncounted<T>(f: impl FnOnce() -> T) -> T {
    let before = held();
    let out = f();
    let _ = HELD.try_with(|h| h.set(before));
    out
}

/// Bytes the calling thread holds now, relative to an earlier [`held`].
pub fn held() -> isize {
    HELD.try_with(Cell::get).unwrap_or(0)
}
