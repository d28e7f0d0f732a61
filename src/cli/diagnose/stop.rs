//! Ctrl-C and SIGTERM: a flag the steps poll, so that a stopped run still
//! closes its markers and asks for the reports (a second Ctrl-C ends it at
//! once, by the default action).

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that asked for the stop (0: none yet).
static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(sig, Ordering::SeqCst);
    // SAFETY: signal() is async-signal-safe; the next one takes the default.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic and resets itself,
        // both async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst) != 0
}

/// What stopped the run, in words.
pub fn by() -> &'static str {
    match STOP.load(Ordering::SeqCst) {
        libc::SIGTERM => "SIGTERM",
        _ => "Ctrl-C",
    }
}
