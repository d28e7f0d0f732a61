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
//! Each shard sits behind its own spin lock (taken uncontended in the common
//! case: no global lock), keeps entries densely in a chunked slab (48 bytes
//! an entry, freed slots reused), found through an open-addressing index of
//! u32 slab positions. Chunks never move: growth copies only the index. A
//! shard outlives its thread: the next owner of its counter block inherits it.

use super::counters::MAX_BLOCKS;
use super::spin::SpinLock;
use crate::report::Api;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

/// One per counter block, and one for the overflow block.
const SHARDS: usize = MAX_BLOCKS + 1;
const CHUNK: usize = 256;
const EMPTY: u32 = 0;
const NONE: u32 = u32::MAX;
const RECENT: usize = 32;

/// One live allocation: 48 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Entry {
    pub address: u64,
    /// size:48 | api:8 | device:8
    size_api_device: u64,
    pub stream: u64,
    pub ticks: u64,
    /// seq:40 | thread:24
    seq_thread: u64,
    /// The return address of the outermost hook that made it (0: unknown).
    pub caller: u64,
}

pub const MAX_SIZE: u64 = (1 << 48) - 1;
const _: () = assert!(
    super::devices::MAX_DEVICES <= 256,
    "an entry keeps 8 bits of device"
);

impl Entry {
    #[allow(clippy::too_many_arguments)] // one per packed field
    pub fn new(
        address: u64,
        size: u64,
        api: Api,
        device: u32,
        stream: u64,
        ticks: u64,
        seq: u64,
        thread: u32,
        caller: u64,
    ) -> Entry {
        Entry {
            address,
            size_api_device: size.min(MAX_SIZE) | (api as u64) << 48 | (device as u64 & 0xff) << 56,
            stream,
            ticks,
            seq_thread: (seq & ((1 << 40) - 1)) | (thread as u64 & 0xff_ffff) << 40,
            caller,
        }
    }
    pub fn size(&self) -> u64 {
        self.size_api_device & MAX_SIZE
    }
    pub fn api(&self) -> Api {
        Api::from_u8((self.size_api_device >> 48) as u8).unwrap_or(Api::CudaMalloc)
    }
    pub fn device(&self) -> u32 {
        (self.size_api_device >> 56) as u32
    }
    pub fn seq(&self) -> u64 {
        self.seq_thread & ((1 << 40) - 1)
    }
    pub fn thread(&self) -> u32 {
        (self.seq_thread >> 40) as u32
    }
}

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

    #[inline]
    fn slot(&self, pos: u32) -> &Entry {
        &self.chunks[pos as usize / CHUNK][pos as usize % CHUNK]
    }

    #[inline]
    fn slot_mut(&mut self, pos: u32) -> &mut Entry {
        &mut self.chunks[pos as usize / CHUNK][pos as usize % CHUNK]
    }

    /// (index position of the key, or of the empty place that ends its probe; found)
    #[inline]
    fn probe(&self, address: u64, h: u64) -> (usize, bool) {
        let mask = self.index.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match self.index[i] {
                EMPTY => return (i, false),
                v if self.slot(v - 1).address == address => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

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

    fn take_slot(&mut self) -> u32 {
        if self.free_head != NONE {
            let pos = self.free_head;
            self.free_head = self.slot(pos).stream as u32;
            return pos;
        }
        if self.slab_len as usize == self.chunks.len() * CHUNK {
            self.chunks.push(Box::new([Entry::default(); CHUNK]));
        }
        self.slab_len += 1;
        self.slab_len - 1
    }

    #[inline(always)]
    fn insert(&mut self, e: Entry, h: u64) -> Option<Entry> {
        if (self.len + 1) as usize * 4 > self.index.len() * 3 {
            self.grow();
        }
        let (i, found) = self.probe(e.address, h);
        if found {
            let slot = self.slot_mut(self.index[i] - 1);
            return Some(std::mem::replace(slot, e));
        }
        let pos = self.take_slot();
        *self.slot_mut(pos) = e;
        self.index[i] = pos + 1;
        self.len += 1;
        None
    }

    #[inline(always)]
    fn remove(&mut self, address: u64, h: u64) -> Option<Entry> {
        if self.len == 0 {
            return None;
        }
        let (mut i, found) = self.probe(address, h);
        if !found {
            return None;
        }
        let pos = self.index[i] - 1;
        let e = *self.slot(pos);
        // Shift the rest of the cluster back over the hole.
        let mask = self.index.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let v = self.index[j];
            if v == EMPTY {
                break;
            }
            let home = hash(self.slot(v - 1).address) as usize & mask;
            // Can the entry at j move to i: is i on its probe path (home..=j, cyclically)?
            if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
                self.index[i] = v;
                i = j;
            }
        }
        self.index[i] = EMPTY;
        self.len -= 1;
        self.slot_mut(pos).stream = self.free_head as u64;
        self.free_head = pos;
        self.recent[self.recent_at] = address;
        self.recent_at = (self.recent_at + 1) % RECENT;
        Some(e)
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
}

#[repr(align(128))]
struct Padded(SpinLock<Shard>);

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
    pub fn new() -> Table {
        Table {
            shards: (0..SHARDS)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            made: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn home(&self, home: usize) -> &SpinLock<Shard> {
        let i = home.min(SHARDS - 1);
        let p = self.shards[i].load(Acquire);
        if p.is_null() {
            return self.make(i);
        }
        // SAFETY: shards are only freed with the table.
        unsafe { &(*p).0 }
    }

    #[cold]
    fn make(&self, i: usize) -> &SpinLock<Shard> {
        let fresh = Box::into_raw(Box::new(Padded(SpinLock::new(Shard::new()))));
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

    /// Every shard made so far, with its index.
    fn all(&self) -> impl Iterator<Item = (usize, &SpinLock<Shard>)> {
        (0..self.made.load(Acquire))
            .chain([MAX_BLOCKS])
            .filter_map(|i| {
                let p = self.shards[i].load(Acquire);
                // SAFETY: shards are only freed with the table.
                (!p.is_null()).then(|| (i, unsafe { &(*p).0 }))
            })
    }

    /// Adds an allocation to the shard of `home` (the caller's block index);
    /// returns the entry it replaced when that shard still had the address
    /// live (its free went unseen).
    #[inline]
    pub fn insert(&self, e: Entry, home: usize) -> Option<Entry> {
        let h = hash(e.address);
        self.home(home).lock().insert(e, h)
    }

    /// Takes an allocation out: from `home`'s shard, else from any other.
    #[inline]
    pub fn remove(&self, address: u64, home: usize) -> Option<Entry> {
        let h = hash(address);
        if let Some(e) = self.home(home).lock().remove(address, h) {
            return Some(e);
        }
        self.remove_elsewhere(address, h, home)
    }

    #[cold]
    fn remove_elsewhere(&self, address: u64, h: u64, home: usize) -> Option<Entry> {
        self.all()
            .filter(|(i, _)| *i != home.min(SHARDS - 1))
            .find_map(|(_, s)| s.lock().remove(address, h))
    }

    pub fn get(&self, address: u64) -> Option<Entry> {
        let h = hash(address);
        self.all().find_map(|(_, s)| {
            let s = s.lock();
            if s.len == 0 {
                return None;
            }
            let (i, found) = s.probe(address, h);
            found.then(|| *s.slot(s.index[i] - 1))
        })
    }

    /// Was `address` among the last addresses freed in any shard?
    pub fn recently_freed(&self, address: u64) -> bool {
        self.all().any(|(_, s)| s.lock().recent.contains(&address))
    }

    pub fn len(&self) -> usize {
        self.all().map(|(_, s)| s.lock().len as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visits every live entry. Each shard is locked only while it is visited.
    pub fn for_each(&self, mut f: impl FnMut(&Entry)) {
        for (_, s) in self.all() {
            let s = s.lock();
            for &v in &s.index {
                if v != EMPTY {
                    f(s.slot(v - 1));
                }
            }
        }
    }

    /// A copy of every live entry.
    pub fn snapshot(&self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each(|e| out.push(*e));
        out
    }

    /// Heap bytes the table holds.
    pub fn memory_bytes(&self) -> usize {
        self.shards.len() * std::mem::size_of::<AtomicPtr<Padded>>()
            + self
                .all()
                .map(|(_, s)| std::mem::size_of::<Padded>() + s.lock().bytes())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(address: u64, size: u64) -> Entry {
        Entry::new(
            address,
            size,
            Api::CudaMallocAsync,
            3,
            9,
            100,
            7,
            1234,
            0x5000,
        )
    }

    #[test]
    fn fields_pack_and_unpack() {
        let e = Entry::new(
            0xdead_0000,
            5 << 30,
            Api::CuMemCreate,
            17,
            0x55,
            99,
            (1 << 40) + 3,
            0x12_3456,
            0x7f12_3456_789a,
        );
        assert_eq!(e.size(), 5 << 30);
        assert_eq!(e.api(), Api::CuMemCreate);
        assert_eq!(e.device(), 17);
        assert_eq!(e.seq(), 3);
        assert_eq!(e.thread(), 0x12_3456);
        assert_eq!(e.caller, 0x7f12_3456_789a);
        assert_eq!(std::mem::size_of::<Entry>(), 48);
    }

    #[test]
    fn matches_a_hashmap_under_random_operations() {
        let t = Table::new();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut x = 0x1234_5678_9abc_def0u64;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 2 MiB-aligned addresses from a small range: many collisions and reuse.
            let addr = 0x7f00_0000_0000 + (x % 5000) * (2 << 20);
            // Inserts into one shard, frees from any: they find it wherever it is.
            if x.is_multiple_of(3) {
                assert_eq!(
                    t.remove(addr, (x % 7) as usize).map(|e| e.size()),
                    model.remove(&addr),
                    "op {i}"
                );
            } else {
                let old = t.insert(entry(addr, i), 0);
                assert_eq!(old.map(|e| e.size()), model.insert(addr, i), "op {i}");
            }
        }
        assert_eq!(t.len(), model.len());
        let mut snap: Vec<_> = t.snapshot().iter().map(|e| (e.address, e.size())).collect();
        let mut want: Vec<_> = model.into_iter().collect();
        snap.sort();
        want.sort();
        assert_eq!(snap, want);
    }

    #[test]
    fn remembers_recent_frees() {
        let t = Table::new();
        t.insert(entry(0x1000, 1), 0);
        assert!(!t.recently_freed(0x1000));
        assert!(t.remove(0x1000, 5).is_some(), "found from another home");
        assert!(t.recently_freed(0x1000));
        assert!(t.remove(0x1000, 0).is_none());
        assert_eq!(t.get(0x1000), None);
    }

    #[test]
    fn concurrent_inserts_and_removes_leave_the_exact_set() {
        let t = std::sync::Arc::new(Table::new());
        let threads: Vec<_> = (0..8u64)
            .map(|id| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let a = (id << 40) | (i << 9);
                        t.insert(entry(a, i), id as usize);
                        if i % 4 != 0 {
                            // Every other free from another thread's home.
                            assert!(t.remove(a, (id as usize + (i % 2) as usize) % 8).is_some());
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.len(), 8 * 5000);
    }
}
