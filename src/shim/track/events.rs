//! The flight recorder: each thread keeps its last N allocation events in a
//! ring it alone writes; a report merges the rings by time. A slot carries a
//! stamp written last, so a reader racing a writer drops the slot instead of
//! reading it torn.

use crate::report::Api;
use std::sync::atomic::{fence, AtomicU64, Ordering::*};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Alloc = 1,
    Free = 2,
    Fail = 3,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Alloc => "alloc",
            Op::Free => "free",
            Op::Fail => "fail",
        }
    }
    fn from_u8(v: u8) -> Option<Op> {
        match v {
            1 => Some(Op::Alloc),
            2 => Some(Op::Free),
            3 => Some(Op::Fail),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct EventRec {
    pub ticks: u64,
    pub op: Op,
    pub api: Api,
    pub device: u32,
    pub address: u64,
    pub size: u64,
    pub code: i32,
    pub thread: u32,
    /// The return address of the outermost hook (0: unknown).
    pub caller: u64,
}

#[derive(Default)]
struct Slot {
    stamp: AtomicU64,
    ticks: AtomicU64,
    address: AtomicU64,
    size: AtomicU64,
    caller: AtomicU64,
    /// op:8 | api:8 | device:8 | code:16 | thread:24
    meta: AtomicU64,
}

pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

pub struct EventRing {
    slots: Box<[Slot]>,
    /// slots.len() - 1: the capacity is a power of two.
    mask: u64,
    next: AtomicU64,
}

impl EventRing {
    /// Holds the last `capacity` events (rounded up to a power of two).
    pub fn new(capacity: usize) -> EventRing {
        let n = capacity.max(1).next_power_of_two();
        let slots = (0..n).map(|_| Slot::default()).collect();
        EventRing {
            slots,
            mask: n as u64 - 1,
            next: AtomicU64::new(0),
        }
    }

    /// `shared`: other threads may push too (the overflow block).
    #[inline]
    pub fn push(&self, shared: bool, e: &EventRec) {
        let n = if shared {
            self.next.fetch_add(1, Relaxed)
        } else {
            let n = self.next.load(Relaxed);
            self.next.store(n + 1, Relaxed);
            n
        };
        // SAFETY: `mask` is the slot count less one (a power of two), so the
        // index is in bounds (the hot path must not panic: see guard.rs).
        let slot = unsafe { self.slots.get_unchecked((n & self.mask) as usize) };
        slot.stamp.store(0, Relaxed);
        fence(Release);
        slot.ticks.store(e.ticks, Relaxed);
        slot.address.store(e.address, Relaxed);
        slot.size.store(e.size, Relaxed);
        slot.caller.store(e.caller, Relaxed);
        let meta = e.op as u64
            | (e.api as u64) << 8
            | (e.device as u64 & 0xff) << 16
            | (e.code as u16 as u64) << 24
            | (e.thread as u64 & 0xff_ffff) << 40;
        slot.meta.store(meta, Relaxed);
        slot.stamp.store(n + 1, Release);
    }

    /// The events still in the ring (unordered).
    pub fn collect(&self, out: &mut Vec<EventRec>) {
        for slot in self.slots.iter() {
            let a = slot.stamp.load(Acquire);
            if a == 0 {
                continue;
            }
            let ticks = slot.ticks.load(Relaxed);
            let address = slot.address.load(Relaxed);
            let size = slot.size.load(Relaxed);
            let caller = slot.caller.load(Relaxed);
            let meta = slot.meta.load(Relaxed);
            fence(Acquire);
            if slot.stamp.load(Relaxed) != a {
                continue;
            }
            let (Some(op), Some(api)) = (Op::from_u8(meta as u8), Api::from_u8((meta >> 8) as u8))
            else {
                continue;
            };
            out.push(EventRec {
                ticks,
                op,
                api,
                device: (meta >> 16) as u8 as u32,
                address,
                size,
                code: (meta >> 24) as u16 as i16 as i32,
                thread: (meta >> 40) as u32 & 0xff_ffff,
                caller,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_n_events() {
        let ring = EventRing::new(4);
        for i in 0..10u64 {
            let e = EventRec {
                ticks: i,
                op: if i % 2 == 0 { Op::Alloc } else { Op::Free },
                api: Api::CudaMalloc,
                device: 3,
                address: 0x1000 + i,
                size: i * 10,
                code: 2,
                thread: 77,
                caller: 0x4000 + i,
            };
            ring.push(false, &e);
        }
        let mut out = Vec::new();
        ring.collect(&mut out);
        out.sort_by_key(|e| e.ticks);
        assert_eq!(
            out.iter().map(|e| e.ticks).collect::<Vec<_>>(),
            vec![6, 7, 8, 9]
        );
        assert_eq!(out[0].device, 3);
        assert_eq!(out[0].code, 2);
        assert_eq!(out[0].thread, 77);
        assert_eq!(out[0].caller, 0x4006);
        assert_eq!(out[1].op, Op::Free);
    }
}
