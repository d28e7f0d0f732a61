//! Per-thread counters, folded on read, and exact peaks without a shared
//! counter on the hot path.
//!
//! Every thread owns a `ThreadBlock`: cumulative bytes and counts per lane
//! (a lane is one device's device memory, one device's managed memory, or
//! pinned host memory), calls per entry point, and its flight-recorder ring.
//! The owner updates them with plain loads and stores; readers sum all
//! blocks. A block is recycled when its thread exits.
//!
//! Peaks need the global live total at each allocation, which a shared
//! atomic would give at the price of a cache line bouncing between cores on
//! every call. Instead each thread holds a *lease* per lane: an amount it may
//! allocate without publishing, carved out of the room below the peak
//! (`peak - published - leases`). While the process stays under its peak,
//! allocations stay thread-local; an allocation beyond the lease takes the
//! lane's lock, publishes, recomputes the live total from all blocks (a new
//! peak is recorded there, exactly, for a single thread) and takes a new
//! lease of half the remaining room. When outstanding leases could hide a new
//! peak, they are revoked at once by bumping the lane's epoch.

use super::clock;
use super::devices::{clamp, MAX_DEVICES};
use super::events::{EventRec, EventRing};
use super::guard::protect;
use super::spin::SpinLock;
use super::tls::{self, Tls};
use crate::report::{Api, Space};
use std::cell::RefCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::OnceLock;

pub const LANES: usize = 2 * MAX_DEVICES + 1;
const HOST_LANE: usize = 2 * MAX_DEVICES;
pub const MAX_BLOCKS: usize = 4096;
const API_COUNT: usize = Api::ALL.len();
/// A thread that frees more than it allocated publishes past this, so the
/// published total does not drift far above the truth.
const NEG_LIMIT: i64 = 64 << 20;
/// The least lease a thread gets while other threads allocate on the same
/// lane: a process that sits at its peak with several threads allocating
/// and freeing would otherwise publish on every call. The peak may then be
/// missed by up to this much per such thread; with one thread it is exact.
pub const LEASE_FLOOR: u64 = 2 << 20;

/// Device ordinals at or above MAX_DEVICES share the last device's lanes.
#[inline]
pub fn lane(space: Space, device: u32) -> usize {
    let d = clamp(device) as usize;
    match space {
        Space::Device => d,
        Space::Managed => MAX_DEVICES + d,
        Space::Host => HOST_LANE,
    }
}

/// Adds to a counter only its thread writes (readers load it whole).
#[inline(always)]
fn bump(a: &AtomicU64, v: u64) {
    a.store(a.load(Relaxed).wrapping_add(v), Relaxed);
}

#[derive(Default)]
struct Lane {
    alloc_bytes: AtomicU64,
    allocs: AtomicU64,
    freed_bytes: AtomicU64,
    frees: AtomicU64,
    failures: AtomicU64,
    /// Bytes allocated minus freed by this thread and not yet published.
    pending: AtomicI64,
    lease: AtomicU64,
    /// The part of `lease` carved from the room below the peak (the rest is the floor).
    backed: AtomicU64,
    epoch: AtomicU64,
}

#[repr(align(128))]
pub struct ThreadBlock {
    /// Its place among the blocks (MAX_BLOCKS for the overflow block); the
    /// live table keeps one shard per block.
    pub index: usize,
    in_use: AtomicBool,
    /// The overflow block, shared by threads that found no block of their own.
    shared: bool,
    next_seq: AtomicU64,
    lanes: [Lane; LANES],
    calls: [AtomicU64; API_COUNT],
    pub ring: EventRing,
}

impl ThreadBlock {
    fn new(index: usize, shared: bool, events: usize) -> ThreadBlock {
        ThreadBlock {
            index,
            in_use: AtomicBool::new(true),
            shared,
            next_seq: AtomicU64::new(0),
            lanes: std::array::from_fn(|_| Lane::default()),
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
            ring: EventRing::new(events),
        }
    }

    /// Adds to a counter of this block: atomically for the shared block.
    #[inline(always)]
    fn add(&self, a: &AtomicU64, v: u64) {
        if self.shared {
            a.fetch_add(v, Relaxed);
        } else {
            a.store(a.load(Relaxed).wrapping_add(v), Relaxed);
        }
    }

    pub fn is_shared(&self) -> bool {
        self.shared
    }

    #[inline]
    pub fn next_seq(&self) -> u64 {
        if self.shared {
            self.next_seq.fetch_add(1, Relaxed)
        } else {
            let n = self.next_seq.load(Relaxed);
            self.next_seq.store(n + 1, Relaxed);
            n
        }
    }

    #[inline]
    pub fn count_call(&self, api: Api) {
        self.add(&self.calls[api as usize], 1);
    }

    pub fn count_failure(&self, lane: usize) {
        self.add(&self.lanes[lane].failures, 1);
    }

    /// The thread's counters of `lane`, which `lane()` keeps below LANES.
    #[inline(always)]
    fn lane(&self, lane: usize) -> &Lane {
        debug_assert!(lane < LANES);
        // SAFETY: every lane index comes from `lane()`, below LANES (the hot
        // path must not panic: see guard.rs).
        unsafe { self.lanes.get_unchecked(lane) }
    }

    /// An allocation of `size` bytes in `lane`. The block's own thread
    /// updates it with plain loads and stores; the shared overflow block
    /// takes the atomic path.
    #[inline]
    pub fn alloc(&'static self, lane: usize, size: u64) {
        if self.shared {
            return self.alloc_shared(lane, size);
        }
        let l = self.lane(lane);
        bump(&l.alloc_bytes, size);
        bump(&l.allocs, 1);
        let pending = l.pending.load(Relaxed) + size as i64;
        // SAFETY: lane < LANES, as above.
        let epoch = unsafe { PEAKS.get_unchecked(lane) }.epoch.load(Relaxed);
        if l.epoch.load(Relaxed) == epoch && pending <= l.lease.load(Relaxed) as i64 {
            l.pending.store(pending, Relaxed);
        } else {
            self.publish(lane, size as i64, true);
        }
    }

    #[cold]
    fn alloc_shared(&'static self, lane: usize, size: u64) {
        let l = self.lane(lane);
        l.alloc_bytes.fetch_add(size, Relaxed);
        l.allocs.fetch_add(1, Relaxed);
        self.publish(lane, size as i64, true);
    }

    /// A free of `size` bytes in `lane` (the lane the allocation was counted in).
    #[inline]
    pub fn free(&'static self, lane: usize, size: u64) {
        let l = self.lane(lane);
        let pending = if self.shared {
            l.freed_bytes.fetch_add(size, Relaxed);
            l.frees.fetch_add(1, Relaxed);
            l.pending.fetch_sub(size as i64, Relaxed) - size as i64
        } else {
            bump(&l.freed_bytes, size);
            bump(&l.frees, 1);
            let p = l.pending.load(Relaxed) - size as i64;
            l.pending.store(p, Relaxed);
            p
        };
        if pending < -NEG_LIMIT {
            self.publish(lane, 0, false);
        }
    }

    /// Takes back a free whose real call failed.
    pub fn unfree(&'static self, lane: usize, size: u64) {
        let l = &self.lanes[lane];
        self.add(&l.freed_bytes, size.wrapping_neg());
        self.add(&l.frees, u64::MAX);
        self.publish(lane, size as i64, true);
    }

    /// The slow path: publish this thread's pending bytes plus `extra`,
    /// recompute the peak when `renew` (an allocation), and take a new lease.
    #[cold]
    fn publish(&'static self, lane: usize, extra: i64, renew: bool) {
        protect(|| self.publish_here(lane, extra, renew));
    }

    fn publish_here(&'static self, lane: usize, extra: i64, renew: bool) {
        let peak = &PEAKS[lane];
        let mut g = peak.inner.lock();
        let l = &self.lanes[lane];
        let epoch = peak.epoch.load(Relaxed);
        g.published += l.pending.swap(0, Relaxed) + extra;
        if !renew {
            return;
        }
        if l.epoch.load(Relaxed) == epoch {
            g.leased -= l.backed.load(Relaxed).min(g.leased);
        }
        l.lease.store(0, Relaxed);
        l.backed.store(0, Relaxed);

        let (others, mut revoked, floored) = others_pending(self, lane, epoch);
        let live = g.published + others;
        if live > g.peak as i64 {
            g.peak = live as u64;
            g.peak_ticks = clock::ticks();
        }
        let mut epoch = epoch;
        // Floors are the tolerance: only what lies beyond them forces a revocation.
        let tolerance = floored as i64 * LEASE_FLOOR as i64;
        if g.published + g.leased as i64 + revoked > g.peak as i64 + tolerance {
            // Outstanding leases could carry the total past the peak unseen: void them.
            epoch += 1;
            peak.epoch.store(epoch, Relaxed);
            g.leased = 0;
            revoked = others_pending(self, lane, epoch).1;
        }
        let room = g.peak as i64 - g.published - g.leased as i64 - revoked;
        let backed = if room > 0 && !self.shared {
            (room / 2) as u64
        } else {
            0
        };
        let others_active = floored > 0 || others != 0;
        let floor = if others_active && !self.shared {
            LEASE_FLOOR
        } else {
            0
        };
        l.lease.store(backed.max(floor), Relaxed);
        l.backed.store(backed, Relaxed);
        l.epoch.store(epoch, Relaxed);
        g.leased += backed;
    }
}

/// Sum of other threads' pending bytes, of the positive ones whose lease is
/// void (they cannot grow without publishing, but are not yet published), and
/// the number of other threads holding a valid floor lease.
fn others_pending(me: &ThreadBlock, lane: usize, epoch: u64) -> (i64, i64, u64) {
    let (mut all, mut revoked, mut floored) = (0i64, 0i64, 0u64);
    for b in blocks() {
        if ptr::eq(b, me) {
            continue;
        }
        let l = &b.lanes[lane];
        let p = l.pending.load(Relaxed);
        all += p;
        let valid = !b.shared && l.epoch.load(Relaxed) == epoch;
        if p > 0 && !valid {
            revoked += p;
        }
        if valid && l.lease.load(Relaxed) > l.backed.load(Relaxed) {
            floored += 1;
        }
    }
    (all, revoked, floored)
}

struct PeakState {
    published: i64,
    leased: u64,
    peak: u64,
    peak_ticks: u64,
}

struct Peak {
    inner: SpinLock<PeakState>,
    epoch: AtomicU64,
}

static PEAKS: [Peak; LANES] = [const {
    Peak {
        inner: SpinLock::new(PeakState {
            published: 0,
            leased: 0,
            peak: 0,
            peak_ticks: 0,
        }),
        epoch: AtomicU64::new(0),
    }
}; LANES];

static BLOCKS: [AtomicPtr<ThreadBlock>; MAX_BLOCKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_BLOCKS];
static BLOCK_COUNT: AtomicUsize = AtomicUsize::new(0);
static OVERFLOW: OnceLock<&'static ThreadBlock> = OnceLock::new();
static EVENTS_PER_THREAD: AtomicUsize = AtomicUsize::new(512);

/// Sets the flight-recorder capacity of blocks created from now on.
pub fn set_events_per_thread(n: usize) {
    EVENTS_PER_THREAD.store(n.max(1), Relaxed);
}

fn overflow() -> &'static ThreadBlock {
    OVERFLOW.get_or_init(|| {
        Box::leak(Box::new(ThreadBlock::new(
            MAX_BLOCKS,
            true,
            EVENTS_PER_THREAD.load(Relaxed),
        )))
    })
}

/// Every block ever created (in use or free) and the overflow block.
pub fn blocks() -> impl Iterator<Item = &'static ThreadBlock> {
    let n = BLOCK_COUNT.load(Acquire).min(MAX_BLOCKS);
    BLOCKS[..n]
        .iter()
        .filter_map(|p| {
            let p = p.load(Acquire);
            // SAFETY: blocks are leaked, never freed.
            (!p.is_null()).then(|| unsafe { &*p })
        })
        .chain(OVERFLOW.get().copied())
}

fn claim() -> &'static ThreadBlock {
    let n = BLOCK_COUNT.load(Acquire).min(MAX_BLOCKS);
    for p in &BLOCKS[..n] {
        let p = p.load(Acquire);
        if p.is_null() {
            continue;
        }
        // SAFETY: blocks are leaked, never freed.
        let b = unsafe { &*p };
        if !b.in_use.load(Relaxed)
            && b.in_use
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
        {
            return b;
        }
    }
    let i = BLOCK_COUNT.fetch_add(1, AcqRel);
    if i >= MAX_BLOCKS {
        BLOCK_COUNT.store(MAX_BLOCKS, Release);
        return overflow();
    }
    let b: &'static ThreadBlock = Box::leak(Box::new(ThreadBlock::new(
        i,
        false,
        EVENTS_PER_THREAD.load(Relaxed),
    )));
    BLOCKS[i].store(b as *const _ as *mut _, Release);
    b
}

/// Gives the block back when its thread exits.
struct Owner(&'static ThreadBlock);

impl Drop for Owner {
    fn drop(&mut self) {
        // Hooks that still run during this thread's teardown use the overflow block.
        tls::get().block.set(overflow());
        self.0.in_use.store(false, Release);
    }
}

thread_local! {
    static OWNER: RefCell<Option<Owner>> = const { RefCell::new(None) };
}

/// The calling thread's block.
#[inline]
pub fn current() -> &'static ThreadBlock {
    block_of(tls::get())
}

#[inline]
pub fn block_of(t: &Tls) -> &'static ThreadBlock {
    claimed(t).unwrap_or_else(|| first_block(t))
}

/// The thread's block, once it has claimed one.
#[inline]
pub fn claimed(t: &Tls) -> Option<&'static ThreadBlock> {
    let p = t.block.get();
    // SAFETY: blocks are leaked, never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// Claims a block for the thread (allocates the first time a slot is used).
#[cold]
pub fn first_block(t: &Tls) -> &'static ThreadBlock {
    let b = claim();
    let owned = !b.shared && OWNER.try_with(|o| *o.borrow_mut() = Some(Owner(b))).is_ok();
    let b = if owned || b.shared {
        b
    } else {
        // Thread teardown already ran: nobody would give the block back.
        b.in_use.store(false, Release);
        overflow()
    };
    t.block.set(b);
    b
}

/// Totals of one lane over all threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneTotals {
    pub alloc_bytes: u64,
    pub allocs: u64,
    pub freed_bytes: u64,
    pub frees: u64,
    pub failures: u64,
    pub peak_bytes: u64,
    pub peak_ticks: u64,
}

impl LaneTotals {
    pub fn live_bytes(&self) -> u64 {
        self.alloc_bytes.saturating_sub(self.freed_bytes)
    }
    pub fn live_count(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }
}

pub fn fold(lane: usize) -> LaneTotals {
    let mut t = LaneTotals::default();
    for b in blocks() {
        let l = &b.lanes[lane];
        t.alloc_bytes += l.alloc_bytes.load(Relaxed);
        t.allocs += l.allocs.load(Relaxed);
        t.freed_bytes += l.freed_bytes.load(Relaxed);
        t.frees += l.frees.load(Relaxed);
        t.failures += l.failures.load(Relaxed);
    }
    let g = PEAKS[lane].inner.lock();
    t.peak_bytes = g.peak;
    t.peak_ticks = g.peak_ticks;
    drop(g);
    // A peak reached by concurrent fast paths is caught here at the latest.
    if t.live_bytes() > t.peak_bytes {
        let mut g = PEAKS[lane].inner.lock();
        if t.live_bytes() > g.peak {
            g.peak = t.live_bytes();
            g.peak_ticks = clock::ticks();
        }
        t.peak_bytes = g.peak;
        t.peak_ticks = g.peak_ticks;
    }
    t
}

/// Calls per entry point over all threads.
pub fn calls() -> [u64; API_COUNT] {
    let mut c = [0u64; API_COUNT];
    for b in blocks() {
        for (i, v) in b.calls.iter().enumerate() {
            c[i] += v.load(Relaxed);
        }
    }
    c
}

/// The last `n` allocation events of all threads, oldest first.
pub fn recent_events(n: usize) -> Vec<EventRec> {
    let mut all = Vec::new();
    for b in blocks() {
        b.ring.collect(&mut all);
    }
    all.sort_by_key(|e| e.ticks);
    let skip = all.len().saturating_sub(n);
    all.split_off(skip)
}

/// Memory one thread's counters and flight recorder take.
pub fn block_bytes() -> usize {
    std::mem::size_of::<ThreadBlock>()
        + EVENTS_PER_THREAD.load(Relaxed).next_power_of_two() * super::events::SLOT_BYTES
}
