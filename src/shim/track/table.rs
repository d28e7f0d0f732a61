//! The live table: every live allocation, keyed by address.
//!
//! Under unified virtual addressing an address names one allocation in the
//! process, whatever the device; the entry keeps the device (a free does not say).
//!
//! One shard per thread (per counter block): a thread inserts into its own
//! shard and looks there first when it frees, so the common case, a thread
//! freeing what it allocated, touches only cache lines its own core holds;
//! with address-hashed shards every call would pull a line from the other
//! core. A free of another thread's allocation searches the other shards.
//! Each shard sits behind its own owner-biased lock (`owned`: its owner
//! enters without an atomic exchange; no global lock), keeps entries
//! (`entry`, 48 bytes) densely in a chunked slab (freed slots reused), found
//! through an open-addressing index of u32 slab positions. Chunks never move: growth copies only the index. A
//! shard outlives its thread: the next owner of its counter block inherits it.

use super::counters::MAX_BLOCKS;
pub use super::entry::{Entry, MAX_SIZE};
use super::guard::protect;
use super::owned::{self, OwnedLock};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

/// One per counter block, and one for the overflow block.
const SHARDS: usize = MAX_BLOCKS + 1;
const CHUNK: usize = 256;
const EMPTY: u32 = 0;
const NONE: u32 = u32::MAX;
const RECENT: usize = 32;
/// No shard: `visit` skips none.
const NO_SHARD: usize = usize::MAX;

#[inline]
fn hash(address: u64) -> u64 {
    // Allocation addresses are at least 256-byte aligned: drop those bits,
    // multiply (Fibonacci hashing), fold the well-mixed high bits down.
    let h = (address >> 8).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

struct Shard {
    /// Open addressing with linear probing: 0 empty, else slab position + 1.
    /// Deletion shifts the cluster back, so there are no tombstones.
    index: Vec<u32>,
    chunks: Vec<Box<[Entry; CHUNK]>>,
    /// High-water mark of slab positions.
    slab_len: u32,
    /// Head of the free-slot chain (threaded through `Entry::stream`).
    free_head: u32,
    len: u32,
    /// Addresses freed last, to tell a double free from an unknown pointer.
    recent: [u64; RECENT],
    recent_at: usize,
}

impl Shard {
    const fn new() -> Shard {
        Shard {
            index: Vec::new(),
            chunks: Vec::new(),
            slab_len: 0,
            free_head: NONE,
            len: 0,
            recent: [0; RECENT],
            recent_at: 0,
        }
    }

    #[inline(always)]
    fn slot(&self, pos: u32) -> &Entry {
        debug_assert!(pos < self.slab_len);
        let (c, i) = (pos as usize / CHUNK, pos as usize % CHUNK);
        // SAFETY: positions come from the index or the free chain, all below
        // `slab_len`, whose chunks exist; `i < CHUNK`.
        unsafe { self.chunks.get_unchecked(c).get_unchecked(i) }
    }

    #[inline(always)]
    fn slot_mut(&mut self, pos: u32) -> &mut Entry {
        debug_assert!(pos < self.slab_len);
        let (c, i) = (pos as usize / CHUNK, pos as usize % CHUNK);
        // SAFETY: as in `slot`.
        unsafe { self.chunks.get_unchecked_mut(c).get_unchecked_mut(i) }
    }

    /// The index cell `i`, masked by its length - 1.
    #[inline(always)]
    fn cell(&self, i: usize) -> u32 {
        debug_assert!(i < self.index.len());
        // SAFETY: callers mask `i` by `index.len() - 1` (a power of two,
        // non-empty whenever `len > 0` or after `grow`).
        unsafe { *self.index.get_unchecked(i) }
    }

    #[inline(always)]
    fn set_cell(&mut self, i: usize, v: u32) {
        debug_assert!(i < self.index.len());
        // SAFETY: as in `cell`.
        unsafe { *self.index.get_unchecked_mut(i) = v }
    }

    /// (index position of the key, or of the empty place that ends its probe; found)
    /// Only with a non-empty index (`len > 0`, or after `grow`).
    #[inline(always)]
    fn probe(&self, address: u64, h: u64) -> (usize, bool) {
        let mask = self.index.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match self.cell(i) {
                EMPTY => return (i, false),
                v if self.slot(v - 1).address == address => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

    #[cold]
    fn grow(&mut self) {
        let want = ((self.len as usize + 1) * 2).next_power_of_two().max(64);
        let old = std::mem::replace(&mut self.index, vec![EMPTY; want]);
        let mask = want - 1;
        for v in old.into_iter().filter(|&v| v != EMPTY) {
            let mut i = hash(self.slot(v - 1).address) as usize & mask;
            while self.index[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.index[i] = v;
        }
    }

    #[inline(always)]
    fn take_slot(&mut self) -> u32 {
        if self.free_head != NONE {
            let pos = self.free_head;
            self.free_head = self.slot(pos).stream as u32;
            return pos;
        }
        if self.slab_len as usize == self.chunks.len() * CHUNK {
            self.add_chunk();
        }
        self.slab_len += 1;
        self.slab_len - 1
    }

    #[cold]
    fn add_chunk(&mut self) {
        self.chunks.push(Box::new([Entry::default(); CHUNK]));
    }

    #[inline(always)]
    fn insert(&mut self, e: Entry, h: u64) -> Option<Entry> {
        if (self.len + 1) as usize * 4 > self.index.len() * 3 {
            // Cold and allocating: the one part of an insert that could panic.
            protect(|| self.grow());
        }
        let (i, found) = self.probe(e.address, h);
        if found {
            let slot = self.slot_mut(self.cell(i) - 1);
            return Some(std::mem::replace(slot, e));
        }
        let pos = self.take_slot();
        *self.slot_mut(pos) = e;
        self.set_cell(i, pos + 1);
        self.len += 1;
        None
    }

    /// Takes `address` out into `out` (one copy, straight to where the
    /// caller keeps it); false when the shard does not hold it.
    #[inline(always)]
    fn take(&mut self, address: u64, h: u64, out: &mut Entry) -> bool {
        if self.len == 0 {
            return false;
        }
        let (mut i, found) = self.probe(address, h);
        if !found {
            return false;
        }
        let pos = self.cell(i) - 1;
        *out = *self.slot(pos);
        // Shift the rest of the cluster back over the hole.
        let mask = self.index.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let v = self.cell(j);
            if v == EMPTY {
                break;
            }
            let home = hash(self.slot(v - 1).address) as usize & mask;
            // Can the entry at j move to i: is i on its probe path (home..=j, cyclically)?
            if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
                self.set_cell(i, v);
                i = j;
            }
        }
        self.set_cell(i, EMPTY);
        self.len -= 1;
        self.slot_mut(pos).stream = self.free_head as u64;
        self.free_head = pos;
        self.recent[self.recent_at] = address;
        self.recent_at = (self.recent_at + 1) % RECENT;
        true
    }

    fn bytes(&self) -> usize {
        self.index.capacity() * 4 + self.chunks.len() * std::mem::size_of::<[Entry; CHUNK]>()
    }
}

pub struct Table {
    /// Made on first use, never freed while the table lives.
    shards: Box<[AtomicPtr<Padded>]>,
    /// One past the highest shard index made, below MAX_BLOCKS.
    made: AtomicUsize,
    /// Owners enter their shards without an atomic exchange (`owned`).
    biased: bool,
}

#[repr(align(128))]
struct Padded(OwnedLock<Shard>);

impl Drop for Table {
    fn drop(&mut self) {
        for p in self.shards.iter() {
            let p = p.load(Acquire);
            if !p.is_null() {
                // SAFETY: made by Box::into_raw in `make`, dropped once.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

impl Table {
    /// Owner-biased where the process could register for the barrier.
    pub fn new() -> Table {
        Table::with_bias(owned::available())
    }

    /// `biased` forced (tests); true only where `owned::available()`.
    pub fn with_bias(biased: bool) -> Table {
        Table {
            shards: (0..SHARDS)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            made: AtomicUsize::new(0),
            biased,
        }
    }

    pub fn is_biased(&self) -> bool {
        self.biased
    }

    #[inline(always)]
    fn home(&self, home: usize) -> &OwnedLock<Shard> {
        let i = home.min(SHARDS - 1);
        // SAFETY: `i < SHARDS == shards.len()`.
        let p = unsafe { self.shards.get_unchecked(i) }.load(Acquire);
        if p.is_null() {
            return self.make(i);
        }
        // SAFETY: shards are only freed with the table.
        unsafe { &(*p).0 }
    }

    #[cold]
    fn make(&self, i: usize) -> &OwnedLock<Shard> {
        // The overflow shard's block is shared by many threads: no owner.
        let biased = self.biased && i < MAX_BLOCKS;
        let fresh = Box::into_raw(Box::new(Padded(OwnedLock::new(Shard::new(), biased))));
        let p = match self.shards[i].compare_exchange(std::ptr::null_mut(), fresh, AcqRel, Acquire)
        {
            Ok(_) => {
                if i < MAX_BLOCKS {
                    self.made.fetch_max(i + 1, AcqRel);
                }
                fresh
            }
            Err(existing) => {
                // SAFETY: ours, never shared.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        };
        // SAFETY: shards are only freed with the table.
        unsafe { &(*p).0 }
    }

    /// Every shard made so far, with its index, in index order (the order
    /// every multi-shard locker takes them in: no deadlock).
    fn all(&self) -> impl Iterator<Item = (usize, &OwnedLock<Shard>)> {
        (0..self.made.load(Acquire))
            .chain([MAX_BLOCKS])
            .filter_map(|i| {
                let p = self.shards[i].load(Acquire);
                // SAFETY: shards are only freed with the table.
                (!p.is_null()).then(|| (i, unsafe { &(*p).0 }))
            })
    }

    /// Visits every made shard but `skip` until `f` says stop, one at a
    /// time: each is locked (its owner fenced: one barrier per biased
    /// shard, ~0.1-0.2 us), visited and released before the next, so an
    /// owner waits only while its own shard is read.
    fn visit(&self, skip: usize, mut f: impl FnMut(&mut Shard) -> bool) {
        for (i, s) in self.all() {
            if i != skip && f(&mut s.lock()) {
                return;
            }
        }
    }

    /// Adds an allocation to the shard of `home` (the caller's block index);
    /// returns the entry it replaced when that shard still had the address
    /// live (its free went unseen). `owned`: the calling thread holds block
    /// `home` alone (`!block.is_shared()`), the contract the counters'
    /// plain stores keep too; true from any other thread breaks exclusion.
    #[inline(always)]
    pub fn insert(&self, e: Entry, home: usize, owned: bool) -> Option<Entry> {
        let h = hash(e.address);
        let s = self.home(home);
        if owned {
            // SAFETY: the caller owns `home` (above).
            unsafe { s.owned() }.insert(e, h)
        } else {
            insert_locked(s, e, h)
        }
    }

    /// Takes an allocation out: from `home`'s shard, else from any other.
    /// `owned` as for `insert`. (The tests' form of `take`.)
    #[cfg(test)]
    pub fn remove(&self, address: u64, home: usize, owned: bool) -> Option<Entry> {
        let mut e = Entry::default();
        self.take(address, home, owned, &mut e).then_some(e)
    }

    /// Takes an allocation out, from `home`'s shard, else from any other,
    /// into `out` (copied once, straight to where the hook keeps it); false
    /// when no shard holds it. `owned` as for `insert`.
    #[inline(always)]
    pub fn take(&self, address: u64, home: usize, owned: bool, out: &mut Entry) -> bool {
        let h = hash(address);
        let s = self.home(home);
        let found = if owned {
            // SAFETY: the caller owns `home` (`insert`).
            unsafe { s.owned() }.take(address, h, out)
        } else {
            take_locked(s, address, h, out)
        };
        found || self.take_elsewhere(address, h, home, out)
    }

    #[cold]
    fn take_elsewhere(&self, address: u64, h: u64, home: usize, out: &mut Entry) -> bool {
        let mut found = false;
        self.visit(home.min(SHARDS - 1), |s| {
            found = s.take(address, h, out);
            found
        });
        found
    }

    pub fn get(&self, address: u64) -> Option<Entry> {
        let h = hash(address);
        let mut found = None;
        self.visit(NO_SHARD, |s| {
            if s.len > 0 {
                let (i, hit) = s.probe(address, h);
                found = hit.then(|| *s.slot(s.cell(i) - 1));
            }
            found.is_some()
        });
        found
    }

    /// Was `address` among the last addresses freed in any shard?
    pub fn recently_freed(&self, address: u64) -> bool {
        let mut seen = false;
        self.visit(NO_SHARD, |s| {
            seen = s.recent.contains(&address);
            seen
        });
        seen
    }

    pub fn len(&self) -> usize {
        let mut n = 0;
        self.visit(NO_SHARD, |s| {
            n += s.len as usize;
            false
        });
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visits every live entry (each shard locked only while it is visited).
    pub fn for_each(&self, mut f: impl FnMut(&Entry)) {
        self.visit(NO_SHARD, |s| {
            for &v in &s.index {
                if v != EMPTY {
                    f(s.slot(v - 1));
                }
            }
            false
        });
    }

    /// A copy of every live entry.
    pub fn snapshot(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        self.for_each(|e| out.push(*e));
        out
    }

    /// Heap bytes the table holds.
    pub fn memory_bytes(&self) -> usize {
        let mut n = self.shards.len() * std::mem::size_of::<AtomicPtr<Padded>>();
        self.visit(NO_SHARD, |s| {
            n += std::mem::size_of::<Padded>() + s.bytes();
            false
        });
        n
    }
}

/// The shared overflow shard's insert (its block has many threads, no
/// owner): out of line, so that the owner's path inlines alone.
#[cold]
#[inline(never)]
fn insert_locked(s: &OwnedLock<Shard>, e: Entry, h: u64) -> Option<Entry> {
    s.lock().insert(e, h)
}

#[cold]
#[inline(never)]
fn take_locked(s: &OwnedLock<Shard>, address: u64, h: u64, out: &mut Entry) -> bool {
    s.lock().take(address, h, out)
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
