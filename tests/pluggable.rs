//! The pluggable-allocator entry points (kvscope_malloc / kvscope_free and
//! PyTorch's optional hooks), driven by native/clients/pluggable_client.c the
//! way torch.cuda.memory.CUDAPluggableAllocator calls them.

mod common;
use common::*;
use serde_json::Value;

/// Runs a scenario with the library dlopened (and, with `preload`, preloaded too).
fn scenario(name: &str, args: &[&str], preload: bool) -> Run {
    let dir = scratch(&format!("{name}-{}-{preload}", args.join("-")));
    let lib = shim_lib();
    let mut all = vec![lib.to_str().unwrap(), name];
    all.extend_from_slice(args);
    let r = run("pluggable_client", &all, &[], preload, &dir);
    assert_eq!(r.code(), 0, "{}\n{}", r.stdout(), r.stderr());
    r
}

fn modes(rep: &Value) -> Vec<&str> {
    rep["modes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect()
}

#[test]
fn threads_on_their_own_streams_are_tracked_as_asked() {
    let r = scenario("basic", &["8", "5000"], false);
    let want = expectations(&r.stdout());
    let rep = r.report("exit");
    assert_eq!(modes(&rep), ["pluggable"]);
    let m = &device(&rep, 0)["memory"];
    assert_eq!(u(&m["live_bytes"]), want["device0.live_bytes"]);
    assert_eq!(u(&m["live_count"]), want["device0.live_count"]);
    assert_eq!(u(&rep["calls"]["kvscope_malloc"]), want["kvscope_malloc"]);
    assert_eq!(u(&rep["calls"]["kvscope_free"]), want["kvscope_free"]);
    // The driver calls behind them are the allocator's, not the application's.
    assert!(
        rep["calls"].get("cuMemAllocFromPoolAsync").is_none(),
        "{}",
        rep["calls"]
    );
    // What the process itself saw through kvscope_live_bytes, while running.
    assert_eq!(
        figures(&r.stdout())["kvscope_live_bytes"]
            .parse::<u64>()
            .unwrap(),
        want["device0.live_bytes"]
    );
    // Per stream: every thread's stream and the default stream, one block each.
    let streams = rep["live"]["by_stream"].as_array().unwrap();
    assert_eq!(streams.len() as u64, want["streams"]);
    assert!(streams.iter().all(|s| u(&s["count"]) == 1));
    assert_eq!(
        streams.iter().map(|s| u(&s["bytes"])).sum::<u64>(),
        want["device0.live_bytes"]
    );
    // kvscope's pool: reserved covers what tensors hold and is kept (threshold: all).
    let pools = rep["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert!(u(&pools[0]["reserved_bytes"]) >= want["device0.live_bytes"]);
    assert_eq!(u(&pools[0]["release_threshold"]), u64::MAX);
    let zero = ["untracked_frees", "double_frees", "size_mismatched_frees"];
    for k in zero {
        assert_eq!(u(&rep["anomalies"][k]), 0, "{k}");
    }
}

#[test]
fn wrong_sizes_foreign_pointers_and_double_frees_are_counted_and_contained() {
    let r = scenario("anomalies", &[], false);
    let want = expectations(&r.stdout());
    let rep = r.report("exit");
    for k in ["size_mismatched_frees", "double_frees", "untracked_frees"] {
        assert_eq!(u(&rep["anomalies"][k]), want[k], "{k}");
    }
    assert_eq!(
        u(&device(&rep, 0)["memory"]["live_bytes"]),
        want["device0.live_bytes"]
    );
    let summary = kvscope(&["report", r.reports[0].to_str().unwrap()]);
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(
        text.contains("frees of unknown pointers: 2, double frees: 1, size mismatches: 1"),
        "{text}"
    );
}

#[test]
fn memory_fraction_caps_the_device() {
    let r = scenario("fraction", &[], false);
    let want = expectations(&r.stdout());
    let rep = r.report("exit");
    assert_eq!(
        u(&rep["failure_counts"]["kvscope_malloc"]["2"]),
        want["failed.kvscope_malloc"]
    );
    assert_eq!(
        u(&device(&rep, 0)["memory"]["live_bytes"]),
        want["device0.live_bytes"]
    );
}

#[test]
fn record_stream_orders_the_free_after_the_other_stream() {
    // The checks are in the client (against the stand-in's record of stream waits).
    let r = scenario("record", &[], false);
    assert_eq!(figures(&r.stdout())["waits"], "1");
}

#[test]
fn empty_cache_returns_the_pools_memory() {
    let r = scenario("reset", &[], false);
    let f = figures(&r.stdout());
    assert_eq!(f["cached_bytes"], (256u64 << 20).to_string());
    assert_eq!(f["after_reset_bytes"], "0");
}

#[test]
fn preload_and_pluggable_in_one_process_count_each_allocation_once() {
    for preload in [false, true] {
        let r = scenario("mixed", &[], preload);
        let want = expectations(&r.stdout());
        let rep = r.report("dump-1");
        let live = u(&device(&rep, 0)["memory"]["live_bytes"]);
        assert_eq!(live, want["device0.live_bytes"], "preload {preload}");
        assert_eq!(
            figures(&r.stdout())["kvscope_live_bytes"]
                .parse::<u64>()
                .unwrap(),
            live
        );
        assert_eq!(u(&rep["live"]["count"]), if preload { 2 } else { 1 });
        let want_modes: &[&str] = if preload {
            &["preload", "pluggable"]
        } else {
            &["pluggable"]
        };
        assert_eq!(modes(&rep), want_modes);
    }
}

#[test]
fn the_summary_shows_tensors_against_the_pool() {
    let r = scenario("basic", &["2", "100"], false);
    let out = kvscope(&["report", r.reports[0].to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("seen through: pluggable"), "{text}");
    assert!(
        text.contains("tensors on device 0: 6.00 MiB allocated"),
        "{text}"
    );
    assert!(text.contains("x default stream"), "{text}");
}
