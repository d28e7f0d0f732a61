//! Per-thread state of the hooks, in one const-initialised thread local with
//! no destructor (the cheapest kind to reach from a shared object).

use super::counters::ThreadBlock;
use std::cell::Cell;
use std::ptr;

pub struct Tls {
    /// Hooks entered and not yet left: an allocation is recorded only by the
    /// outermost one, so a cudaMalloc that reaches cuMemAlloc_v2 counts once.
    pub depth: Cell<u32>,
    /// The current device as the thread set it (cudaSetDevice, cuCtxSetCurrent).
    pub device: Cell<u32>,
    pub block: Cell<*const ThreadBlock>,
    pub tid: Cell<u32>,
}

thread_local! {
    pub static TLS: Tls = const {
        Tls { depth: Cell::new(0), device: Cell::new(0), block: Cell::new(ptr::null()), tid: Cell::new(0) }
    };
}

/// Held while a hook runs; `outer` is true for the outermost hook of the thread.
pub struct Depth {
    pub outer: bool,
}

impl Depth {
    #[inline]
    pub fn enter() -> Depth {
        TLS.with(|t| {
            let d = t.depth.get();
            t.depth.set(d + 1);
            Depth { outer: d == 0 }
        })
    }
}

impl Drop for Depth {
    #[inline]
    fn drop(&mut self) {
        TLS.with(|t| t.depth.set(t.depth.get().saturating_sub(1)));
    }
}

pub fn device() -> u32 {
    TLS.with(|t| t.device.get())
}

pub fn set_device(device: u32) {
    TLS.with(|t| t.device.set(device));
}

/// The kernel's id of the calling thread, cached.
#[inline]
pub fn tid() -> u32 {
    TLS.with(|t| {
        let v = t.tid.get();
        if v != 0 {
            return v;
        }
        // SAFETY: gettid has no preconditions.
        let v = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
        t.tid.set(v);
        v
    })
}
