//! Per-thread state of the hooks, in one const-initialised thread local with
//! no destructor (the cheapest kind to reach from a shared object). A hook
//! reaches it once and passes the reference along.

use super::counters::ThreadBlock;
use std::cell::Cell;
use std::ptr;

pub struct Tls {
    /// 1 while a recording hook runs on this thread: the hooks it reaches
    /// (the runtime's own driver calls) pass through, so an allocation counts once.
    pub depth: Cell<u32>,
    /// The current device as the thread set it (cudaSetDevice, cuCtxSetCurrent).
    pub device: Cell<u32>,
    pub block: Cell<*const ThreadBlock>,
    /// This thread's last time stamp (an allocation's clock read, or a
    /// free's coarse time): what the coarse time of its next free follows.
    pub ticks: Cell<u64>,
    tid: Cell<u32>,
}

thread_local! {
    static TLS: Tls = const {
        Tls {
            depth: Cell::new(0),
            device: Cell::new(0),
            block: Cell::new(ptr::null()),
            ticks: Cell::new(0),
            tid: Cell::new(0),
        }
    };
}

/// The calling thread's state.
#[inline]
pub fn get() -> &'static Tls {
    // SAFETY: a const thread local without destructor lives as long as its
    // thread; the reference is only used by that thread, inside a hook.
    TLS.with(|t| unsafe { &*(t as *const Tls) })
}

impl Tls {
    /// The kernel's id of the thread, cached.
    #[inline]
    pub fn tid(&self) -> u32 {
        let v = self.tid.get();
        if v != 0 {
            return v;
        }
        // SAFETY: gettid has no preconditions.
        let v = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
        self.tid.set(v);
        v
    }
}

/// Whether a recording hook is running on this thread (this call is nested).
#[inline(always)]
pub fn nested() -> bool {
    TLS.with(|t| t.depth.get() != 0)
}

pub fn device() -> u32 {
    get().device.get()
}

pub fn set_device(device: u32) {
    get().device.set(device);
}
