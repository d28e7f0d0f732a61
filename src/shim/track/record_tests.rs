use super::*;
use crate::shim::track::{counters, tls};

fn recorder() -> Recorder {
    Recorder {
        tls: tls::get(),
        block: counters::current(),
        caller: 0,
    }
}

/// A free made on another thread than the allocation, with a coarse time
/// older than the allocation's exact one, still sorts after it, and the
/// freeing thread's next stamps after the free.
#[test]
fn a_free_sorts_after_the_allocation_it_frees_whichever_thread_made_it() {
    let (table, anomalies) = (Table::new(), Anomalies::default());
    let address = 0x7f00_dead_0000;
    std::thread::scope(|s| {
        s.spawn(|| {
            let a = Alloc {
                api: Api::CudaMalloc,
                device: 0,
                address,
                size: 4096,
                stream: 0,
            };
            track_alloc(&table, &anomalies, recorder(), 1_000_000, a);
        });
    });
    let r = recorder();
    let mut out = Entry::default();
    assert!(track_free(&table, r, 500, Api::CudaFree, address, &mut out));
    let mut events = Vec::new();
    r.block.ring.collect(&mut events);
    let free = events
        .iter()
        .find(|e| e.op == Op::Free && e.address == address)
        .map(|e| e.ticks);
    assert_eq!(free, Some(1_000_001), "{events:?}");
    assert_eq!(r.tls.ticks.get(), 1_000_001);
}
