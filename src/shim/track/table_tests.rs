//! Tests of the live table (kept apart: table.rs stays under 500 lines).

use super::*;
use crate::report::Api;
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
                t.remove(addr, (x % 7) as usize, true).map(|e| e.size()),
                model.remove(&addr),
                "op {i}"
            );
        } else {
            let old = t.insert(entry(addr, i), 0, true);
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
    t.insert(entry(0x1000, 1), 0, true);
    assert!(!t.recently_freed(0x1000));
    assert!(
        t.remove(0x1000, 5, false).is_some(),
        "found from another home"
    );
    assert!(t.recently_freed(0x1000));
    assert!(t.remove(0x1000, 0, true).is_none());
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
                    t.insert(entry(a, i), id as usize, true);
                    if i % 4 != 0 {
                        // Every other free from another thread's home.
                        let home = (id as usize + (i % 2) as usize) % 8;
                        assert!(t.remove(a, home, home == id as usize).is_some());
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

/// One owner inserting into (and freeing from) its shard while other
/// threads free its allocations from theirs and read `len`/`snapshot`:
/// every remote free finds its entry exactly once and the final set is
/// exactly what nobody freed.
fn owner_and_remotes(biased: bool) {
    const N: u64 = 6000;
    const REMOTES: u64 = 3;
    let t = std::sync::Arc::new(Table::with_bias(biased));
    assert_eq!(t.is_biased(), biased);
    let addr = |i: u64| 0x7f00_0000_0000 + (i << 12);
    let remotes: Vec<_> = (1..=REMOTES)
        .map(|k| {
            let t = t.clone();
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                for i in (0..N).filter(|i| i % (REMOTES + 1) == k) {
                    // Spin until the owner has inserted it; found once only.
                    while t.remove(addr(i), k as usize, true).is_none() {
                        assert!(std::time::Instant::now() < deadline, "{i} never seen");
                        std::thread::yield_now();
                    }
                    assert!(t.remove(addr(i), k as usize, true).is_none(), "freed twice");
                    if i % 97 == 0 {
                        let snap = t.snapshot();
                        let mut seen: Vec<_> = snap.iter().map(|e| e.address).collect();
                        seen.sort_unstable();
                        seen.dedup();
                        assert_eq!(seen.len(), snap.len(), "an entry seen twice");
                        assert!(t.len() <= N as usize);
                    }
                }
            })
        })
        .collect();
    for i in 0..N {
        assert_eq!(t.insert(entry(addr(i), i), 0, true), None);
        // The owner frees half of its own share itself.
        if i % (REMOTES + 1) == 0 && i % 2 == 0 {
            assert_eq!(t.remove(addr(i), 0, true).map(|e| e.size()), Some(i));
        }
    }
    for r in remotes {
        r.join().unwrap();
    }
    let mut left: Vec<_> = t.snapshot().iter().map(|e| (e.address, e.size())).collect();
    left.sort_unstable();
    let want: Vec<_> = (0..N)
        .filter(|i| i % (REMOTES + 1) == 0 && i % 2 == 1)
        .map(|i| (addr(i), i))
        .collect();
    assert_eq!(left, want);
    assert_eq!(t.len(), want.len());
}

#[test]
fn owner_and_remotes_leave_the_exact_set_unbiased() {
    owner_and_remotes(false);
}

#[test]
fn owner_and_remotes_leave_the_exact_set_biased() {
    if !owned::available() {
        eprintln!("membarrier unavailable here: biased mode not exercised");
        return;
    }
    owner_and_remotes(true);
}

#[test]
fn the_overflow_shard_is_never_biased() {
    let t = Table::with_bias(owned::available());
    t.insert(entry(0x1000, 1), MAX_BLOCKS, false);
    t.insert(entry(0x2000, 1), 0, true);
    assert!(!t.home(MAX_BLOCKS).is_biased());
    assert_eq!(t.home(0).is_biased(), owned::available());
}
