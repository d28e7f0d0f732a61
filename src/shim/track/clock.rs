//! Timestamps for the hot path. On x86_64 the TSC (about 9 ns to read here,
//! against 22 ns for clock_gettime through the vDSO); elsewhere the monotonic
//! clock. Ticks become milliseconds since the shim started through a linear
//! fit against CLOCK_MONOTONIC made when a report is written.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// The clock as the background thread last read it (every sample).
static COARSE: AtomicU64 = AtomicU64::new(0);

/// A coarse time for the free side, where an exact one is not worth a TSC
/// read (~10 ns on a VM): one tick after the later of the thread's last
/// stamp (`last`: its last allocation or free) and the background thread's
/// last sample. So a thread's stamps still increase; never later than the
/// truth, as early as one sample period (or, without a background thread,
/// the thread's last allocation). A free is also stamped after the
/// allocation it frees, when another thread made it (`record::track_free`).
#[inline(always)]
pub fn coarse(last: u64) -> u64 {
    last.max(COARSE.load(Ordering::Relaxed)) + 1
}

/// Advances the coarse clock (the background thread, every sample).
pub fn tick_coarse() {
    COARSE.fetch_max(ticks(), Ordering::Relaxed);
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

    pub fn ms(&self, ticks: u64) -> f64 {
        let ms = ticks.saturating_sub(self.start_ticks) as f64 * self.ms_per_tick;
        (ms * 1000.0).round() / 1000.0
    }

    pub fn ticks_per_ms(&self) -> f64 {
        1.0 / self.ms_per_tick
    }
}
