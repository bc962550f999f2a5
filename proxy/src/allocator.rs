//! The allocator's one setting weir makes at start: mimalloc returns freed memory to the
//! system at once instead of after a delay.
//!
//! mimalloc v2 purges freed pages 10 ms after they empty, but only when the allocator runs
//! again: a process that goes idle right after a burst (10,000 clients that connect, send
//! one request each and stay open) keeps the burst's freed buffers in its RSS. Measured with
//! the suite's `idle-10k` (loadtest/README.md): 69.7 MiB with the default delay, 55.5 MiB
//! with no delay; under keep-alive load the pages are reused before they empty, so a
//! 4,000-request pass-1k run made 19 `madvise` calls instead of 12 (`strace -c`).
//! `MIMALLOC_PURGE_DELAY` in the environment still wins: it is read when the process
//! starts, and weir only sets the option when that variable is absent.

#![allow(unsafe_code)]

use std::os::raw::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_t` (`include/mimalloc.h`): the
/// sixteenth option, after `mi_option_eager_commit_delay` (14).
const MI_OPTION_PURGE_DELAY: c_int = 15;

extern "C" {
    /// mimalloc's `void mi_option_set(mi_option_t option, long value)`, linked from the
    /// static library `libmimalloc-sys` builds for the `mimalloc` crate.
    fn mi_option_set(option: c_int, value: c_long);
}

/// Purge freed memory at once, unless `MIMALLOC_PURGE_DELAY` says otherwise.
pub fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` takes an option index and a value and only stores the value;
    // 15 is `mi_option_purge_delay` in the mimalloc v2 this binary links (the `v2` feature
    // in proxy/Cargo.toml), and 0 is a documented value ("0 for immediate purging").
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}
