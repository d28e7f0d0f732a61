//! How the background thread is woken: a pipe it polls between samples, so
//! that a signal handler can wake it (writing to a pipe is async-signal-safe;
//! unparking a thread is not), and a second pipe on which it answers a stop
//! request. Made when the background thread starts; both ends close on exec.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering::*};

/// What a wake-up asks for (one byte on the pipe).
pub const OOM: u8 = 1;
/// A stop: the byte is `STOP_BASE + signal number`.
pub const STOP_BASE: u8 = 64;

static WAKE_R: AtomicI32 = AtomicI32::new(-1);
static WAKE_W: AtomicI32 = AtomicI32::new(-1);
static DONE_R: AtomicI32 = AtomicI32::new(-1);
static DONE_W: AtomicI32 = AtomicI32::new(-1);

fn pipe() -> Option<(RawFd, RawFd)> {
    let mut fds = [-1; 2];
    // SAFETY: fds is a valid out-array of two ints.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    (rc == 0).then_some((fds[0], fds[1]))
}

/// Makes the pipes; false when the system would not.
pub fn open() -> bool {
    let (Some((wr, ww)), Some((dr, dw))) = (pipe(), pipe()) else {
        return false;
    };
    WAKE_R.store(wr, Release);
    WAKE_W.store(ww, Release);
    DONE_R.store(dr, Release);
    DONE_W.store(dw, Release);
    true
}

/// Whether the pipes exist (there is a background thread to wake).
pub fn is_open() -> bool {
    WAKE_W.load(Acquire) >= 0
}

fn write_byte(fd: &AtomicI32, b: u8) {
    let fd = fd.load(Acquire);
    if fd >= 0 {
        // SAFETY: a one-byte buffer; write is async-signal-safe.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
}

/// Wakes the background thread (async-signal-safe).
pub fn notify(what: u8) {
    write_byte(&WAKE_W, what);
}

/// The background thread has done what a stop asked (its final report).
pub fn answer() {
    write_byte(&DONE_W, 1);
}

/// Waits for a byte on `fd` for up to `ms` (async-signal-safe).
fn wait_readable(fd: RawFd, ms: u64) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; poll is async-signal-safe.
    unsafe { libc::poll(&mut p, 1, ms.min(i32::MAX as u64) as i32) > 0 }
}

/// Waits up to `ms` for the answer to a stop (from a signal handler).
pub fn wait_answer(ms: u64) -> bool {
    let fd = DONE_R.load(Acquire);
    fd >= 0 && wait_readable(fd, ms)
}

/// Sleeps up to `ms` or until woken; the requests that arrived, in order.
pub fn sleep(ms: u64) -> Vec<u8> {
    let fd = WAKE_R.load(Acquire);
    if fd < 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        return Vec::new();
    }
    let mut got = Vec::new();
    if wait_readable(fd, ms) {
        let mut buf = [0u8; 64];
        // SAFETY: buf is writable for its length; the fd is non-blocking.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n > 0 {
            got.extend_from_slice(&buf[..n as usize]);
        }
    }
    got
}
