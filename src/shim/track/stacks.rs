//! Native stacks of big allocations (at least `KVSCOPE_STACK_MIN` bytes):
//! a few return addresses from the `.eh_frame` unwinder of libgcc (CUDA
//! and PyTorch libraries keep no frame pointers, so a frame-pointer walk
//! would stop at the first of them). Captured on the allocating thread
//! after the real call and the table insert, outside every table lock;
//! kept raw in a side table of big allocations only, resolved to files and
//! symbols when a report is written.
//!
//! Re-entrancy: the capture runs inside the outermost hook (the thread's
//! depth is 1), so a CUDA call reached from inside it passes through
//! unrecorded and cannot capture again.

use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::Mutex;

/// Frames kept per stack, ours (the hook's) included; the report drops those.
pub const FRAMES: usize = 12;

#[derive(Clone, Copy, Debug, Default)]
pub struct Stack {
    pub size: u64,
    pub device: u32,
    pub len: u8,
    pub frames: [u64; FRAMES],
}

impl Stack {
    pub fn frames(&self) -> &[u64] {
        &self.frames[..self.len as usize]
    }
}

const URC_NO_REASON: c_int = 0;
const URC_END_OF_STACK: c_int = 5;

unsafe extern "C" {
    fn _Unwind_Backtrace(
        trace: extern "C" fn(*mut c_void, *mut c_void) -> c_int,
        arg: *mut c_void,
    ) -> c_int;
    fn _Unwind_GetIP(ctx: *mut c_void) -> usize;
}

extern "C" fn one_frame(ctx: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Stack that `capture` passed, alive for the walk.
    let s = unsafe { &mut *(arg as *mut Stack) };
    // SAFETY: the unwinder's context of this frame.
    let ip = unsafe { _Unwind_GetIP(ctx) } as u64;
    if ip == 0 {
        return URC_END_OF_STACK;
    }
    s.frames[s.len as usize] = ip;
    s.len += 1;
    if s.len as usize == FRAMES {
        URC_END_OF_STACK
    } else {
        URC_NO_REASON
    }
}

/// The calling thread's stack, innermost first.
#[inline(never)]
pub fn capture(size: u64, device: u32) -> Stack {
    let mut s = Stack {
        size,
        device,
        ..Stack::default()
    };
    // SAFETY: the callback writes at most FRAMES frames into `s`.
    unsafe { _Unwind_Backtrace(one_frame, &mut s as *mut Stack as *mut c_void) };
    s
}

/// Big allocations' stacks by address.
#[derive(Default)]
pub struct Stacks {
    by_address: Mutex<HashMap<u64, Stack>>,
}

impl Stacks {
    /// Walks one stack at start, so that the unwinder's first-use set-up
    /// does not happen inside the host's first big allocation.
    pub fn prepare() {
        std::hint::black_box(capture(0, 0));
    }

    pub fn insert(&self, address: u64, s: Stack) {
        if let Ok(mut m) = self.by_address.lock() {
            m.insert(address, s);
        }
    }

    pub fn remove(&self, address: u64) {
        if let Ok(mut m) = self.by_address.lock() {
            m.remove(&address);
        }
    }

    /// Every stack kept, by address.
    pub fn snapshot(&self) -> Vec<(u64, Stack)> {
        self.by_address
            .lock()
            .map(|m| m.iter().map(|(a, s)| (*a, *s)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn nested(depth: u32) -> Stack {
        if depth == 0 {
            capture(7, 1)
        } else {
            std::hint::black_box(nested(depth - 1))
        }
    }

    #[test]
    fn walks_a_few_frames_and_keeps_them_by_address() {
        let s = nested(3);
        assert!(s.len >= 4, "{s:?}");
        assert_eq!((s.size, s.device), (7, 1));
        let st = Stacks::default();
        st.insert(0x1000, s);
        assert_eq!(st.snapshot().len(), 1);
        st.remove(0x1000);
        assert!(st.snapshot().is_empty());
    }
}
