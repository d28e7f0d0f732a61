//! The recording core alone: one thread's pairs, throughput across
//! threads, memory per live allocation.

use crate::common::*;
use kvscope::report::Api;
use kvscope::shim::track::record::{track_alloc, track_free, Alloc, Recorder};
use kvscope::shim::track::table::{Entry, Table};
use kvscope::shim::track::{clock, counters, tls, Anomalies};
use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

/// One thread's recording work: alloc/free pairs, holding a window of live allocations.
pub fn record_loop(table: &Table, anomalies: &Anomalies, thread: u64, pairs: u64) {
    let r = Recorder {
        tls: tls::get(),
        block: counters::current(),
        caller: 0x5555_0000_1234,
    };
    let base = 0x7f00_0000_0000u64 + (thread << 36);
    const WINDOW: u64 = 64;
    for i in 0..pairs {
        let a = base + (i % 4096) * 0x20_0000;
        let alloc = Alloc {
            api: Api::CudaMalloc,
            device: 0,
            address: a,
            size: 4096,
            stream: 0,
        };
        track_alloc(table, anomalies, r, clock::ticks(), alloc);
        let old = base + ((i + 4096 - WINDOW) % 4096) * 0x20_0000;
        if i >= WINDOW {
            track_free(
                table,
                r,
                clock::ticks(),
                Api::CudaFree,
                old,
                &mut Entry::default(),
            );
        }
    }
}

pub fn mutex_loop(map: &Mutex<HashMap<u64, Entry>>, thread: u64, pairs: u64) {
    let base = 0x7f00_0000_0000u64 + (thread << 36);
    const WINDOW: u64 = 64;
    for i in 0..pairs {
        let a = base + (i % 4096) * 0x20_0000;
        let e = Entry::new(a, 4096, Api::CudaMalloc, 0, 0, i, i, 1, 0);
        map.lock().unwrap().insert(a, e);
        if i >= WINDOW {
            let old = base + ((i + 4096 - WINDOW) % 4096) * 0x20_0000;
            map.lock().unwrap().remove(&old);
        }
    }
}

/// The same inserts and removes on a HashMap each thread owns: nothing shared,
/// the machine's own ceiling for this access pattern.
pub fn private_loop(thread: u64, pairs: u64) {
    let mut map = HashMap::new();
    let base = 0x7f00_0000_0000u64 + (thread << 36);
    const WINDOW: u64 = 64;
    for i in 0..pairs {
        let a = base + (i % 4096) * 0x20_0000;
        map.insert(a, Entry::new(a, 4096, Api::CudaMalloc, 0, 0, i, i, 1, 0));
        if i >= WINDOW {
            std::hint::black_box(map.remove(&(base + ((i + 4096 - WINDOW) % 4096) * 0x20_0000)));
        }
    }
}

/// Pairs per second over `threads` threads, each running `f(thread, pairs)`.
pub fn throughput(threads: u64, pairs: u64, f: Arc<dyn Fn(u64, u64) + Send + Sync>) -> f64 {
    let start = Arc::new(Barrier::new(threads as usize + 1));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (f, start) = (f.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                f(t, pairs);
            })
        })
        .collect();
    let t0 = Instant::now();
    start.wait();
    for h in hs {
        h.join().unwrap();
    }
    (threads * pairs) as f64 / t0.elapsed().as_secs_f64()
}

/// The recording path alone (table, counters, flight recorder), one thread.
pub fn record() {
    let per_run = 2_000_000u64;
    let runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let (table, anomalies) = (Table::new(), Anomalies::default());
            let t0 = Instant::now();
            record_loop(&table, &anomalies, 0, per_run);
            t0.elapsed().as_nanos() as f64 / per_run as f64
        })
        .collect();
    let m = median(runs);
    println!("record    recording one alloc+free pair (table, counters, flight recorder), 1 thread: {m:.1} ns  (what the hooks add beyond it: see preload)");
}

/// Throughput of the recording path at 1, 2 and 16 threads, and of a
/// Mutex<HashMap> doing the same inserts and removes. The thread counts are
/// measured back to back in each round and the ratios taken per round, so
/// that a noisy neighbour on the machine shifts both sides of a ratio.
pub fn scaling() {
    let pairs = 2_000_000u64;
    let rec = |threads: u64| {
        let ctx = Arc::new((Table::new(), Anomalies::default()));
        throughput(
            threads,
            pairs / threads,
            Arc::new(move |t, n| record_loop(&ctx.0, &ctx.1, t, n)),
        )
    };
    let mutex = |threads: u64| {
        let map = Arc::new(Mutex::new(HashMap::new()));
        throughput(
            threads,
            pairs / threads,
            Arc::new(move |t, n| mutex_loop(&map, t, n)),
        )
    };
    let rounds = 7;
    let mut rounds_out = Vec::new();
    for _ in 0..rounds {
        let private = |t: u64| throughput(t, pairs / t, Arc::new(private_loop));
        rounds_out.push([
            rec(1),
            rec(2),
            rec(16),
            mutex(1),
            mutex(2),
            mutex(16),
            private(1),
            private(2),
        ]);
    }
    let col = |i: usize| median(rounds_out.iter().map(|r| r[i]).collect());
    let ratio = |a: usize, b: usize| median(rounds_out.iter().map(|r| r[a] / r[b]).collect());
    let m = |v: f64| v / 1e6;
    println!(
        "scaling   table: {:.1} M pairs/s at 1 thread, {:.1} at 2, {:.1} at 16; Mutex<HashMap>: {:.1}, {:.1}, {:.1} (medians of {rounds} rounds)",
        m(col(0)),
        m(col(1)),
        m(col(2)),
        m(col(3)),
        m(col(4)),
        m(col(5))
    );
    println!("scaling   reference: a HashMap per thread, nothing shared: x{:.2} at 2 threads (this machine's ceiling)", ratio(7, 6));
    let x2 = ratio(1, 0);
    println!(
        "scaling   2 threads / 1: x{x2:.2}  target >= 1.8  {}",
        verdict(x2 >= 1.8, || format!("x{:.2} short", 1.8 - x2))
    );
    let x16 = ratio(2, 0);
    println!(
        "scaling   16 threads / 1 (2 cores): x{x16:.2}  target >= 1.5  {}",
        verdict(x16 >= 1.5, || format!("x{:.2} short", 1.5 - x16))
    );
    let (v2, v16) = (ratio(1, 4), ratio(2, 5));
    println!(
        "scaling   table vs Mutex<HashMap>: x{v2:.2} at 2 threads, x{v16:.2} at 16  target > 1  {}",
        verdict(v2 > 1.0 && v16 > 1.0, || "the mutex map is faster".into())
    );
}

/// Bytes the table holds per live allocation, at a million.
pub fn memory() {
    let n = 1_000_000u64;
    let table = Table::new();
    let empty = table.memory_bytes();
    let b = counters::current();
    for i in 0..n {
        table.insert(
            Entry::new(
                0x7f00_0000_0000 + i * 0x200,
                4096,
                Api::CudaMalloc,
                0,
                0,
                i,
                i,
                1,
                0x5555_0000_1234,
            ),
            b.index,
            !b.is_shared(),
        );
    }
    let per = (table.memory_bytes() - empty) as f64 / n as f64;
    // The per-thread counter blocks are per thread, not per allocation.
    println!(
        "memory    per tracked live allocation at 1M: {per:.1} B (entry {} B + index and slack; per-thread counters {} KiB per thread)  target <= 64 B  {}",
        std::mem::size_of::<Entry>(),
        counters::block_bytes() / 1024,
        verdict(per <= 64.0, || format!("{:.1} B over", per - 64.0))
    );
}
