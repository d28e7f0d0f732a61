//! Per-thread state of the hooks, in one zero-initialised thread-local
//! block with no destructor. A hook reaches it once and passes the reference
//! along.
//!
//! On x86_64 the block is an ELF TLS symbol of its own (`.tbss`, defined
//! below) reached through the TLS-descriptor sequence written out in `get`:
//! the same three instructions `thread_local!` compiles to with
//! `-enable-tlsdesc`, but declared to clobber only `rax` (the descriptor ABI:
//! the resolver preserves every other register). As a Rust call the compiler
//! saved the hook's arguments in callee-saved registers around it, on every
//! hook, the pass-through of nested ones included; with this and the tail
//! calls of `hooks/table.rs`, that pass-through went from 20 instructions to
//! 12. Elsewhere, a const `thread_local!`.

use super::counters::ThreadBlock;
use std::cell::Cell;

/// All zero when a thread starts (`.tbss`): every field's zero is its
/// start value.
pub struct Tls {
    /// 1 while a recording hook runs on this thread: the hooks it reaches
    /// (the runtime's own driver calls) pass through, so an allocation counts once.
    pub depth: Cell<u32>,
    /// The current device as the thread set it (cudaSetDevice, cuCtxSetCurrent).
    pub device: Cell<u32>,
    pub block: Cell<*const ThreadBlock>,
    /// This thread's last time stamp: what its next one follows (`clock::stamp`).
    pub ticks: Cell<u64>,
    tid: Cell<u32>,
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".balign {align}",
    ".globl kvscope_thread_state",
    ".hidden kvscope_thread_state",
    ".type kvscope_thread_state,@object",
    ".size kvscope_thread_state,{size}",
    "kvscope_thread_state:",
    ".zero {size}",
    ".popsection",
    align = const std::mem::align_of::<Tls>(),
    size = const std::mem::size_of::<Tls>(),
);

/// The calling thread's state.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn get() -> &'static Tls {
    let at: *const Tls;
    // SAFETY: the general-dynamic TLS-descriptor sequence of the x86_64 ELF
    // ABI: rax gets the block's offset from the thread pointer, every other
    // register is preserved (flags are not: no preserves_flags), the stack
    // is aligned for the call (no nostack). The block is this thread's,
    // zero-initialised (a valid `Tls`), lives as long as the thread and is
    // only used by it, inside a hook.
    unsafe {
        core::arch::asm!(
            "leaq kvscope_thread_state@tlsdesc(%rip), %rax",
            "call *kvscope_thread_state@tlscall(%rax)",
            "addq %fs:0, %rax",
            out("rax") at,
            options(att_syntax, pure, readonly),
        );
        &*at
    }
}

#[cfg(not(target_arch = "x86_64"))]
thread_local! {
    static TLS: Tls = const {
        Tls {
            depth: Cell::new(0),
            device: Cell::new(0),
            block: Cell::new(std::ptr::null()),
            ticks: Cell::new(0),
            tid: Cell::new(0),
        }
    };
}

/// The calling thread's state.
#[cfg(not(target_arch = "x86_64"))]
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

pub fn device() -> u32 {
    get().device.get()
}

pub fn set_device(device: u32) {
    get().device.set(device);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One block per thread: the same on every call of a thread, another on
    /// each thread, and all zero when the thread starts.
    #[test]
    fn each_thread_has_its_own_zeroed_block() {
        let here = get() as *const Tls as usize;
        assert_eq!(here, get() as *const Tls as usize);
        get().device.set(7);
        let (there, fresh) = std::thread::spawn(|| {
            let t = get();
            let fresh = (
                t.depth.get(),
                t.device.get(),
                t.block.get().is_null(),
                t.ticks.get(),
            );
            t.device.set(3);
            (t as *const Tls as usize, fresh)
        })
        .join()
        .expect("thread");
        assert_ne!(here, there);
        assert_eq!(fresh, (0, 0, true, 0));
        assert_eq!(device(), 7, "another thread's write reached this one");
    }
}
