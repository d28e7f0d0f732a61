//! Timestamps. On x86_64 the TSC (about 9 ns to read in a loop here, against
//! 22 ns for clock_gettime through the vDSO; about 30 ns inside a hook);
//! elsewhere the monotonic clock. The hooks read neither while the time is
//! published: they stamp just after it (`stamp`). Ticks become milliseconds
//! since the shim started through a linear fit against CLOCK_MONOTONIC made
//! when a report is written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static START_TICKS: AtomicU64 = AtomicU64::new(0);
static START_NS: AtomicU64 = AtomicU64::new(0);
static START_UNIX_MS: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        monotonic_ns()
    }
}

/// The latest exact time published: every timeline sample, every marker
/// (`observed`) and every clock read of the hooks (`exact_after`). An
/// allocation or free is stamped just after it (`coarse`),
/// with no clock read: a TSC read inside the hook was half of what the shim
/// added to a `cudaMalloc`+`cudaFree` pair (about 30 of 60 ns).
static COARSE: AtomicU64 = AtomicU64::new(0);

/// Whether something publishes the time often (the background thread, every
/// sample). Without it a coarse stamp could be arbitrarily old, and
/// allocations and frees read the clock instead (`exact_after`).
static TICKING: AtomicBool = AtomicBool::new(false);

/// The stamps of the latest frees, by a hash of their address: an allocation
/// that reuses a freed address stamps after the free, whichever threads made
/// them (the real free returns the address to the driver after the stamp is
/// stored, and the driver's own locking orders that before the reuse), but
/// for a rare race (`freed`). Other addresses sharing a slot only make a
/// stamp later, never past the truth.
const FREED_SLOTS: usize = 1024;
static FREED: [AtomicU64; FREED_SLOTS] = [const { AtomicU64::new(0) }; FREED_SLOTS];

#[inline(always)]
fn freed_slot(address: u64) -> &'static AtomicU64 {
    // Allocation addresses are at least 256-byte aligned.
    let h = (address >> 8).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54;
    &FREED[h as usize % FREED_SLOTS]
}

/// A coarse stamp: one tick after the later of the thread's last stamp
/// (`last`) and the last published time. So a thread's stamps
/// increase, each event sorts after every marker and sample that happened
/// before it and before those that happened after it; a stamp is never later
/// than the truth, and as early as one sample period.
#[inline(always)]
fn coarse(last: u64) -> u64 {
    last.max(COARSE.load(Ordering::Relaxed)) + 1
}

/// Whether the time is published (Acquire: the first published time is
/// seen with it, on any architecture).
#[inline(always)]
fn is_ticking() -> bool {
    TICKING.load(Ordering::Acquire)
}

/// The stamp of a thread's event (a free) after its last one, `last`:
/// coarse; exact (the clock) when nothing publishes the time, so that it is
/// never arbitrarily early.
#[inline(always)]
pub fn stamp(last: u64) -> u64 {
    if !is_ticking() {
        return exact_after(last);
    }
    coarse(last)
}

/// The stamp of an allocation of `address`, after the real call returned
/// it: `stamp`, and after the last free of its address.
#[inline(always)]
pub fn alloc_stamp(last: u64, address: u64) -> u64 {
    stamp(last).max(freed_slot(address).load(Ordering::Relaxed) + 1)
}

/// The clock, after the thread's last stamp `last`; published, so that
/// other threads' coarse stamps of later events follow it (failures, VMM
/// calls, and everything while the background thread is starting, stopped
/// or absent).
#[cold]
#[inline(never)]
pub fn exact_after(last: u64) -> u64 {
    let t = ticks().max(last + 1);
    publish(t);
    t
}

/// Notes a free's stamp for the next allocation of its address; before the
/// real free.
#[inline(always)]
pub fn freed(address: u64, stamp: u64) {
    let slot = freed_slot(address);
    // Not an atomic maximum: that exchange cost 6 ns of a 40 ns pair. So
    // two frees of addresses sharing the slot, racing within nanoseconds,
    // can leave the older stamp of the two in it, and a reuse of the other
    // address by a third thread before the next sample may then sort before
    // its free (docs/report-schema.md, Times).
    if slot.load(Ordering::Relaxed) < stamp {
        slot.store(stamp, Ordering::Relaxed);
    }
}

/// Publishes `t`: every later coarse stamp follows it.
fn publish(t: u64) {
    COARSE.fetch_max(t, Ordering::Relaxed);
}

/// The time now, exact, published. For markers and timeline samples.
pub fn observed() -> u64 {
    let t = ticks();
    publish(t);
    t
}

/// The background thread publishes the time from now on.
pub fn ticking(on: bool) {
    TICKING.store(on, Ordering::Release);
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A tick count and the monotonic clock read at one instant, as nearly as
/// can be: the clock read between two tick reads, the tightest of a few
/// tries, the ticks' midpoint. A thread preempted between two plain reads
/// (a loaded machine) made a pair tens of milliseconds apart, and the rate
/// fitted from it was off by percents (an idle marker seen 195 ms after a
/// 200 ms stillness).
fn pair() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..4 {
        let t0 = ticks();
        let ns = monotonic_ns();
        let t1 = ticks();
        let gap = t1.saturating_sub(t0);
        if gap < best.0 {
            best = (gap, t0 + gap / 2, ns);
        }
    }
    (best.1, best.2)
}

/// Marks the shim's time zero. Called once, at start.
pub fn start() {
    let (t, ns) = pair();
    START_NS.store(ns, Ordering::Relaxed);
    START_TICKS.store(t, Ordering::Relaxed);
    START_UNIX_MS.store(unix_ms(), Ordering::Relaxed);
}

pub fn start_unix_ms() -> u64 {
    START_UNIX_MS.load(Ordering::Relaxed)
}

/// Converts ticks to milliseconds since start, using the tick rate measured
/// over the whole run so far.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    start_ticks: u64,
    ms_per_tick: f64,
}

impl Scale {
    pub fn now() -> Scale {
        let start_ticks = START_TICKS.load(Ordering::Relaxed);
        let start_ns = START_NS.load(Ordering::Relaxed);
        let (t, ns) = pair();
        let dt = t.saturating_sub(start_ticks);
        let dns = ns.saturating_sub(start_ns);
        let ms_per_tick = if cfg!(target_arch = "x86_64") {
            if dt > 0 && dns > 0 {
                dns as f64 / dt as f64 / 1e6
            } else {
                1.0 / 2.5e6 // a 2.5 GHz guess, only before any time has passed
            }
        } else {
            1e-6
        };
        Scale {
            start_ticks,
            ms_per_tick,
        }
    }

    /// Rounded to 0.1 ns, finer than a tick (a TSC runs below 10 GHz), so
    /// stamps one tick apart (a burst of coarse stamps after a marker) stay
    /// apart and in order, in the report as in the shim. (To the µs, as
    /// before, a burst read as one instant, before or after the marker.)
    pub fn ms(&self, ticks: u64) -> f64 {
        let ms = ticks.saturating_sub(self.start_ticks) as f64 * self.ms_per_tick;
        (ms * 1e7).round() / 1e7
    }

    pub fn ticks_per_ms(&self) -> f64 {
        1.0 / self.ms_per_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Coarse stamps, with no clock read, keep the orders the reader relies
    /// on: after a marker published on another thread, after the free of
    /// the reused address on another thread, after the thread's own last
    /// stamp; and, with nothing publishing, allocations and frees read the clock.
    /// One test: `TICKING` is the process's.
    #[test]
    fn coarse_stamps_follow_markers_frees_and_the_thread() {
        ticking(true);
        let marker = std::thread::spawn(observed).join().unwrap_or(0);
        let address = 0x7f00_0020_0000;
        assert!(alloc_stamp(0, address) > marker);
        assert!(coarse(0) > marker);
        // Never later than the truth: no clock read, no step of more than a tick.
        assert!(alloc_stamp(0, address) <= ticks());
        // Another thread freed the address with a stamp ahead of this one's
        // (far ahead: other tests may publish the time meanwhile).
        let free = marker + (1 << 50);
        std::thread::spawn(move || freed(address, free)).join().ok();
        assert_eq!(alloc_stamp(0, address), free + 1);
        // An older free of an address sharing the slot keeps the newer stamp.
        freed(address, marker);
        assert_eq!(alloc_stamp(0, address), free + 1);
        freed_slot(address).store(0, Ordering::Relaxed);
        // The thread's own stamps increase.
        assert!(coarse(free + 5) >= free + 6);
        assert!(stamp(0) > marker && stamp(0) <= ticks());
        ticking(false);
        let before = ticks();
        assert!(alloc_stamp(0, 0x1000) >= before);
        assert!(stamp(0) >= before);
        assert_eq!(alloc_stamp(u64::MAX - 1, 0x1000), u64::MAX);
    }
}
