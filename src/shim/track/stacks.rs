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

/// Frames kept per stack, from the caller of the hook (the report drops any
/// of the shim's own that are left, when the caller was not known).
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

/// A walk in progress: frames of the shim itself are skipped by starting
/// at the hook's return address, when it is known.
struct Walk {
    stack: Stack,
    /// The hook's return address: frames before it are the shim's (0: keep all).
    start: u64,
    walked: u32,
}

/// Frames walked at most while looking for the hook's return address.
const MAX_WALK: u32 = 64;

extern "C" fn one_frame(ctx: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Walk that `capture` passed, alive for the walk.
    let w = unsafe { &mut *(arg as *mut Walk) };
    // SAFETY: the unwinder's context of this frame.
    let ip = unsafe { _Unwind_GetIP(ctx) } as u64;
    w.walked += 1;
    if ip == 0 || w.walked > MAX_WALK {
        return URC_END_OF_STACK;
    }
    if w.start != 0 && ip == w.start {
        // The caller's frame: what came before was the shim's.
        w.start = 0;
        w.stack.len = 0;
    }
    let s = &mut w.stack;
    if (s.len as usize) < FRAMES {
        s.frames[s.len as usize] = ip;
        s.len += 1;
    }
    if s.len as usize == FRAMES && w.start == 0 {
        URC_END_OF_STACK
    } else {
        URC_NO_REASON
    }
}

/// The calling thread's stack, innermost first, from the frame of `start`
/// (the hook's return address; 0: from here, the shim's frames included).
/// Without `start` in the stack, the innermost frames are kept.
#[inline(never)]
pub fn capture(size: u64, device: u32, start: u64) -> Stack {
    let mut w = Walk {
        stack: Stack {
            size,
            device,
            ..Stack::default()
        },
        start,
        walked: 0,
    };
    // SAFETY: the callback writes at most FRAMES frames into `w.stack`.
    unsafe { _Unwind_Backtrace(one_frame, &mut w as *mut Walk as *mut c_void) };
    w.stack
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
        std::hint::black_box(capture(0, 0, 0));
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
    fn nested(depth: u32, start: u64) -> Stack {
        if depth == 0 {
            capture(7, 1, start)
        } else {
            std::hint::black_box(nested(depth - 1, start))
        }
    }

    #[test]
    fn walks_a_few_frames_and_keeps_them_by_address() {
        let s = nested(3, 0);
        assert!(s.len >= 4, "{s:?}");
        assert_eq!((s.size, s.device), (7, 1));
        let st = Stacks::default();
        st.insert(0x1000, s);
        assert_eq!(st.snapshot().len(), 1);
        st.remove(0x1000);
        assert!(st.snapshot().is_empty());
    }

    /// Frames before the hook's return address (the shim's own) are left
    /// out; an address not on the stack keeps the innermost frames.
    #[test]
    fn starts_at_the_given_return_address() {
        let all = nested(3, 0);
        let start = all.frames[1];
        let s = nested(3, start);
        assert_eq!(s.frames[0], start, "{s:?} from {all:?}");
        // The innermost frame (in `capture` itself) is left out.
        assert!(!s.frames().contains(&all.frames[0]), "{s:?} from {all:?}");
        let missing = nested(3, 1);
        assert_eq!(missing.frames[..2], all.frames[..2]);
    }
}
