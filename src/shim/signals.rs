//! Terminating signals (SIGTERM, SIGINT, SIGHUP) while the host leaves them
//! at their default action: the shim's handler asks for a final report, then
//! dies by the signal exactly as the process would have without kvscope.
//!
//! The host keeps full control: preloaded, the shim interposes `sigaction`
//! and `signal` (`hooks/signal.rs`), so a query returns what the host set,
//! a handler the host installs goes to the kernel as it is, and the shim's
//! handler takes the signal only while the host's disposition is the
//! default (again whenever the host sets it back, as CPython does for SIGINT
//! before killing itself after an unhandled KeyboardInterrupt). Loaded as a
//! pluggable allocator (not interposing), it takes a signal only if it is at
//! the default when the shim starts.
//!
//! Everything the handler reaches is async-signal-safe: atomics, `sigaction`
//! through a pointer resolved when arming, `raise`.

use crate::shim::cuda::loader;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};
use std::sync::Mutex;

/// The signals the shim may take, and no others.
pub const STOP_SIGNALS: [c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Holds the stop signals off the calling thread while it holds what the
/// final report needs (the writer, the timeline, the markers): a stop taken
/// there would have the handler wait for a report that cannot be written
/// before the handler returns, and the process would die without it (seen:
/// a host thread in `kvscope_dump` took the SIGTERM). A signal that comes
/// meanwhile goes to another thread or waits, and is taken when the mask is
/// restored, after those locks are released (the guard is dropped last).
pub struct StopMask(libc::sigset_t);

impl StopMask {
    pub fn block() -> StopMask {
        // SAFETY: zeroed sigset_t values are valid input to sigemptyset; the
        // mask applies to this thread only.
        unsafe {
            let (mut set, mut old): (libc::sigset_t, libc::sigset_t) = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in STOP_SIGNALS {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            StopMask(old)
        }
    }
}

impl Drop for StopMask {
    fn drop(&mut self) {
        // SAFETY: a mask this thread had.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;

static REAL_SIGACTION: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_SIGNAL: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
/// The shim's handler is armed and `sigaction` is interposed.
static ARMED: AtomicBool = AtomicBool::new(false);
static HANDLER: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// What the host set for each stop signal (what a query returns): the shim's
/// handler is in the kernel exactly while this is the default (until it has
/// handled a stop).
static HOST: Mutex<[Option<libc::sigaction>; 3]> = Mutex::new([None; 3]);

fn index(sig: c_int) -> Option<usize> {
    STOP_SIGNALS.iter().position(|&s| s == sig)
}

fn real_sigaction() -> Option<SigactionFn> {
    let p = loader::next_cached(&REAL_SIGACTION, c"sigaction");
    // SAFETY: the C library's sigaction, with this signature.
    (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, SigactionFn>(p) })
}

fn real_signal() -> Option<SignalFn> {
    let p = loader::next_cached(&REAL_SIGNAL, c"signal");
    // SAFETY: the C library's signal, with this signature.
    (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, SignalFn>(p) })
}

/// A disposition running `handler` (SA_RESTART) with `blocked` held off
/// while it runs.
fn disposition(handler: libc::sighandler_t, blocked: &[c_int]) -> libc::sigaction {
    // SAFETY: sigaction is plain data; all-zero is a valid value.
    let mut a: libc::sigaction = unsafe { std::mem::zeroed() };
    a.sa_sigaction = handler;
    a.sa_flags = libc::SA_RESTART;
    // SAFETY: a.sa_mask is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut a.sa_mask);
        for &s in blocked {
            libc::sigaddset(&mut a.sa_mask, s);
        }
    }
    a
}

/// The shim's disposition: its handler, the other stop signals blocked
/// while it runs (a second one waits rather than cutting it short).
fn ours() -> libc::sigaction {
    disposition(HANDLER.load(Acquire) as libc::sighandler_t, &STOP_SIGNALS)
}

fn is_default(a: &libc::sigaction) -> bool {
    a.sa_flags & libc::SA_SIGINFO == 0 && a.sa_sigaction == libc::SIG_DFL
}

/// Takes every stop signal the host leaves at its default action, with
/// `handler`; from then on (when `sigaction` is interposed) follows the host.
pub fn arm(handler: extern "C" fn(c_int)) {
    let Some(real) = real_sigaction() else { return };
    HANDLER.store(handler as *mut c_void, Release);
    let Ok(mut host) = HOST.lock() else { return };
    for (i, &sig) in STOP_SIGNALS.iter().enumerate() {
        // SAFETY: sigaction is plain data; all-zero is a valid value.
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a query: valid out-pointer.
        if unsafe { real(sig, std::ptr::null(), &mut now) } != 0 {
            continue;
        }
        if is_default(&now) {
            // SAFETY: installs a valid disposition.
            unsafe { real(sig, &ours(), std::ptr::null_mut()) };
        }
        host[i] = Some(now);
    }
    // Preloaded, the process's `sigaction` is the shim's (not the C library's).
    // SAFETY: RTLD_DEFAULT is always valid; the name is NUL-terminated.
    let global = unsafe { loader::lookup(libc::RTLD_DEFAULT, c"sigaction") };
    ARMED.store(global != REAL_SIGACTION.load(Acquire), Release);
}

/// The host's dispositions, without blocking: the hook may run inside a
/// signal handler that interrupted a thread holding them (then it passes through).
fn host() -> Option<std::sync::MutexGuard<'static, [Option<libc::sigaction>; 3]>> {
    for _ in 0..10_000 {
        if let Ok(g) = HOST.try_lock() {
            return Some(g);
        }
        std::hint::spin_loop();
    }
    None
}

/// The interposed `sigaction`.
///
/// # Safety
/// sigaction's contract.
pub unsafe fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    let Some(real) = real_sigaction() else {
        // SAFETY: sets errno, as a failed sigaction does.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    };
    let pass = || {
        // SAFETY: the caller's arguments, untouched.
        unsafe { real(sig, act, old) }
    };
    let (true, Some(i)) = (ARMED.load(Acquire), index(sig)) else {
        return pass();
    };
    let Some(mut host) = host() else {
        return pass();
    };
    let Some(before) = host[i] else {
        return pass();
    };
    if !act.is_null() {
        // SAFETY: the caller passed a valid sigaction.
        let want = unsafe { *act };
        let rc = if is_default(&want) {
            // The host gives the signal back to the default: the shim takes it.
            // SAFETY: installs a valid disposition.
            unsafe { real(sig, &ours(), std::ptr::null_mut()) }
        } else {
            // SAFETY: the host's own disposition, as it asked.
            unsafe { real(sig, act, std::ptr::null_mut()) }
        };
        if rc != 0 {
            return rc;
        }
        host[i] = Some(want);
    }
    if !old.is_null() {
        // SAFETY: the caller's out-pointer.
        unsafe { *old = before };
    }
    0
}

/// The interposed `signal`: BSD semantics (glibc's), through `sigaction`.
///
/// # Safety
/// signal's contract.
pub unsafe fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if !ARMED.load(Acquire) || index(sig).is_none() {
        return match real_signal() {
            // SAFETY: the caller's arguments, untouched.
            Some(f) => unsafe { f(sig, handler) },
            None => libc::SIG_ERR,
        };
    }
    let act = disposition(handler, &[sig]);
    // SAFETY: sigaction is plain data; all-zero is a valid value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers.
    if unsafe { sigaction(sig, &act, &mut old) } != 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// From the shim's handler: the default action back, and the signal again
/// (pending until the handler returns, then the process dies by it, as it
/// would have). Async-signal-safe.
pub fn die_by(sig: c_int) {
    // Resolved when arming: one atomic load here.
    if let Some(real) = real_sigaction() {
        // SAFETY: sigaction is plain data; all-zero is SIG_DFL, no flags.
        let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: installs the default disposition.
        unsafe { real(sig, &dfl, std::ptr::null_mut()) };
    }
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(sig) };
}
