//! Ctrl-C and SIGTERM as a flag: the exporter and `watch` check it between
//! steps and end cleanly (a terminal restored, a listening socket closed).

use std::sync::atomic::{AtomicBool, Ordering::*};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Release);
}

/// Installs the handler for SIGINT and SIGTERM; the flag it sets.
pub fn install() -> &'static AtomicBool {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    &STOP
}

pub fn requested() -> bool {
    STOP.load(Acquire)
}
