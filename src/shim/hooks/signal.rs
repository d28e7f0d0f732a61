//! The interposed `sigaction` and `signal` (preload mode): the host's view
//! of the stop signals stays its own while the shim holds the ones it left
//! at their default action (see `shim/signals.rs`). Every other signal
//! passes straight through.
#![allow(clippy::missing_safety_doc)]

use crate::shim::signals;
use std::ffi::c_int;

#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    // SAFETY: the caller's arguments, under sigaction's contract.
    unsafe { signals::sigaction(sig, act, old) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: the caller's arguments, under signal's contract.
    unsafe { signals::signal(sig, handler) }
}
