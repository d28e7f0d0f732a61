//! The first out-of-memory failure, captured on the failing thread.
//!
//! That thread is inside the host's allocation call, often holding the
//! host's allocator lock (PyTorch's), and its first OOM is often one it
//! recovers from (it frees its cached blocks and tries again). So only what
//! must be seen at that moment is captured there, in bounded work: the
//! failure, free memory as the driver tells it, the device's live total and
//! its largest live allocations (one pass over the table, no sort, no copy of
//! it), and the last events. The post-mortem report is built and written
//! later from this capture, by the background thread (or at once where there
//! is none). Later reports say how many OOM failures followed and whether
//! allocations succeeded again.

use super::counters;
use super::events::EventRec;
use super::failures::Failure;
use super::table::{Entry, Table};
use super::vmm::Vmm;
use crate::report::{Api, Space};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Mutex;

/// Live allocations a post-mortem lists, largest first.
pub const LARGEST: usize = 20;

/// What the failing thread saw.
#[derive(Clone, Debug)]
pub struct Capture {
    pub failure: Failure,
    /// `cuMemGetInfo` (free, total) of the failing thread's device, right after the failure.
    pub mem_info: Option<(u64, u64)>,
    /// Tracked device memory on that device at the failure.
    pub live_bytes: u64,
    pub live_count: u64,
    /// Its largest live allocations, largest first (earliest first among equals).
    pub largest: Vec<Entry>,
    pub events: Vec<EventRec>,
    /// Successful allocation calls so far, to tell later whether any followed.
    pub allocs_before: u64,
}

/// The out-of-memory history of the process.
#[derive(Default)]
pub struct Oom {
    /// Out-of-memory failures of allocating calls, the first included.
    failures: AtomicU64,
    first: Mutex<Option<Capture>>,
    /// The first capture's post-mortem is yet to be written.
    pending: AtomicBool,
}

/// What later reports say of the OOMs.
#[derive(Clone, Copy, Debug)]
pub struct History {
    pub failures: u64,
    pub first_ticks: u64,
    /// Successful allocations since the first failure.
    pub allocs_after: u64,
}

impl Oom {
    /// Counts an out-of-memory failure; true for the first one, which the
    /// caller then captures.
    pub fn count(&self) -> bool {
        self.failures.fetch_add(1, AcqRel) == 0
    }

    pub fn store(&self, c: Capture) {
        if let Ok(mut f) = self.first.lock() {
            *f = Some(c);
        }
        self.pending.store(true, Release);
    }

    /// The capture whose post-mortem is still to be written (once).
    pub fn take_pending(&self) -> Option<Capture> {
        if !self.pending.swap(false, AcqRel) {
            return None;
        }
        self.first.lock().ok()?.clone()
    }

    pub fn history(&self) -> Option<History> {
        let first = self.first.lock().ok()?;
        let c = first.as_ref()?;
        Some(History {
            failures: self.failures.load(Acquire),
            first_ticks: c.failure.ticks,
            allocs_after: successful_allocs().saturating_sub(c.allocs_before),
        })
    }
}

/// Allocations recorded so far, in every space and on every device.
fn successful_allocs() -> u64 {
    (0..counters::LANES).map(|l| counters::fold(l).allocs).sum()
}

/// Keeps the `LARGEST` biggest entries seen, largest first.
fn keep_largest(top: &mut Vec<Entry>, e: Entry) {
    let before =
        |a: &Entry, b: &Entry| a.size() > b.size() || (a.size() == b.size() && a.ticks < b.ticks);
    if top.len() == LARGEST && !top.last().is_some_and(|last| before(&e, last)) {
        return;
    }
    let at = top.partition_point(|x| before(x, &e));
    top.insert(at, e);
    top.truncate(LARGEST);
}

/// Captures the failure on the failing thread: the live allocations of its
/// device in `table` and `vmm`, and the last `events` events.
pub fn capture(
    table: &Table,
    vmm: &Vmm,
    events: usize,
    failure: Failure,
    mem_info: Option<(u64, u64)>,
) -> Capture {
    let device = failure.device;
    let (mut live_bytes, mut live_count) = (0u64, 0u64);
    let mut largest = Vec::with_capacity(LARGEST + 1);
    table.for_each(|e| {
        if e.device() == device && e.api().space() == Space::Device {
            live_bytes += e.size();
            live_count += 1;
            keep_largest(&mut largest, *e);
        }
    });
    for (handle, h, va) in vmm.snapshot().handles {
        if h.device == device {
            live_bytes += h.size;
            live_count += 1;
            let e = Entry::new(
                va.unwrap_or(handle),
                h.size,
                Api::CuMemCreate,
                h.device,
                0,
                h.ticks,
                h.seq,
                h.thread,
                h.caller,
            );
            keep_largest(&mut largest, e);
        }
    }
    Capture {
        failure,
        mem_info,
        live_bytes,
        live_count,
        largest,
        events: counters::recent_events(events),
        allocs_before: successful_allocs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_largest_in_order_earliest_first_among_equals() {
        let mut top = Vec::new();
        for i in 0..100u64 {
            let size = (i * 37) % 50 + 1;
            keep_largest(
                &mut top,
                Entry::new(0x1000 + i, size, Api::CudaMalloc, 0, 0, i, i, 1, 0),
            );
        }
        assert_eq!(top.len(), LARGEST);
        let sizes: Vec<u64> = top.iter().map(|e| e.size()).collect();
        let mut want: Vec<(u64, u64)> = (0..100u64).map(|i| ((i * 37) % 50 + 1, i)).collect();
        want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        assert_eq!(
            sizes,
            want.iter().take(LARGEST).map(|w| w.0).collect::<Vec<_>>()
        );
        assert_eq!(
            top.iter().map(|e| e.ticks).collect::<Vec<_>>(),
            want.iter().take(LARGEST).map(|w| w.1).collect::<Vec<_>>()
        );
    }
}
