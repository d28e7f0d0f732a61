//! No panic crosses into C. A hook's caller is C code: a panic unwinding
//! out of an `extern "C"` hook aborts the host. The recording hot path is
//! written so that it cannot panic (no bounds-checked indexing, no
//! allocation, no unwrap); every call from it that can (a table's growth,
//! publishing a peak, a failure's post-mortem, a stack capture, a thread's
//! first call) goes through `protect`, which costs nothing until a panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs recording code; a panic in it is swallowed, never crosses into C.
#[inline]
pub fn protect<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}
