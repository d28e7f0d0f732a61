//! The caching world: `caching_sim` allocates every tensor through a
//! PyTorch-like caching allocator (native/clients/caching.c), so kvscope sees
//! segments, not tensors, as in a real PyTorch process. Each scenario runs
//! under the shim; the tests check the allocation pattern on the reports
//! (the stand-in checked on its own), then the diagnosis of `kvscope check`.
//!
//! Verdict tests (`*_is_*diagnosed*`, `*_are_not_leaks`) state what a
//! correct reader says; some need the growth classifier that judges
//! segments by repeated request sizes or by the framework's counters.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The model of the H200 fixtures (Llama-shaped, 4 layers, 2 KV heads of
/// 64, fp16): caching_sim's `tiny` shape.
const TINY: &str = r#"{
 "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
 "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
 "vocab_size": 32000, "max_position_embeddings": 4096, "model_type": "llama",
 "architectures": ["LlamaForCausalLM"], "torch_dtype": "float16"
}"#;

const MIB: u64 = 1 << 20;

/// One `at ...` line: the allocator's counters at a marker.
#[derive(Debug, Clone, PartialEq)]
struct At {
    label: String,
    allocated: u64,
    reserved: u64,
    segments: u64,
}

struct Sim {
    run: Run,
    dir: PathBuf,
    expect: BTreeMap<String, u64>,
    at: Vec<At>,
}

impl Sim {
    fn e(&self, key: &str) -> u64 {
        *self
            .expect
            .get(key)
            .unwrap_or_else(|| panic!("no expect.{key}: {}", self.run.stdout()))
    }
    fn at(&self, label: &str) -> &At {
        self.at
            .iter()
            .find(|a| a.label == label)
            .unwrap_or_else(|| panic!("no marker {label}"))
    }
    fn segment_sizes(&self) -> Vec<u64> {
        let f = figures(&self.run.stdout());
        f["segment_sizes"]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    }
    fn model(&self) -> PathBuf {
        let p = self.dir.join("tiny-config.json");
        std::fs::write(&p, TINY).unwrap();
        p
    }
}

fn parse_at(stdout: &str) -> Vec<At> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("at "))
        .map(|l| {
            let (nums, label) = l.split_once(" label=").unwrap();
            let n: BTreeMap<&str, u64> = nums
                .split(' ')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k, v.parse().unwrap())
                })
                .collect();
            At {
                label: label.to_string(),
                allocated: n["allocated"],
                reserved: n["reserved"],
                segments: n["segments"],
            }
        })
        .collect()
}

/// caching_sim under the shim, sampling every 5 ms, 20 ms between requests.
fn sim(name: &str, args: &[&str], env: &[(&str, &str)]) -> Sim {
    let dir = scratch(name);
    let mut all = vec!["--phase-ms", "20"];
    all.extend_from_slice(args);
    let mut envs = vec![("KVSCOPE_SAMPLE_MS", "5")];
    envs.extend_from_slice(env);
    let run = run_watched(
        "caching_sim",
        &all,
        &envs,
        true,
        &dir,
        std::time::Duration::from_secs(120),
    );
    let out = run.stdout();
    Sim {
        expect: expectations(&out),
        at: parse_at(&out),
        run,
        dir,
    }
}

struct Checked {
    json: Value,
    code: i32,
}

impl Checked {
    fn critical(&self) -> Vec<String> {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "critical")
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    }
    fn finding(&self, name: &str) -> &Value {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {:#}", self.json["findings"]))
    }
    fn findings(&self) -> String {
        format!("{:#}", self.json["findings"])
    }
}

fn check(reports: &[PathBuf], model: &Path) -> Checked {
    let out = Command::new(kvscope_bin())
        .arg("check")
        .args(reports)
        .arg("--model")
        .arg(model)
        .arg("--json")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    Checked {
        json,
        code: out.status.code().unwrap(),
    }
}

fn check_tiny(s: &Sim) -> Checked {
    check(&s.run.reports, &s.model())
}

/// Whether a finding says it judged by the framework's own counters.
/// The finding says it judged tensors, from the framework's counters: in
/// its numbers (`view`) and in its words.
fn cites_framework_counters(f: &Value) -> bool {
    f["numbers"]["view"] == "tensor_level"
        && f["summary"].to_string().contains("PyTorch's counters")
}

/// The timeline's marker points of device 0: (label, live bytes, live count,
/// framework (allocated, reserved)).
type Point = (String, u64, u64, Option<(u64, u64)>);

fn marker_points(r: &Value) -> Vec<Point> {
    r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            let label = t["marker"].as_str()?.to_string();
            let d = t["devices"].as_array()?.iter().find(|d| d["device"] == 0);
            let (live, count, fw) = match d {
                Some(d) => (
                    u(&d["live_bytes"]),
                    u(&d["live_count"]),
                    d.get("framework")
                        .filter(|f| !f.is_null())
                        .map(|f| (u(&f["allocated_bytes"]), u(&f["reserved_bytes"]))),
                ),
                None => (0, 0, None),
            };
            Some((label, live, count, fw))
        })
        .collect()
}

/// Live device allocations of a report, largest first.
fn live_sizes(r: &Value) -> Vec<u64> {
    let mut v: Vec<u64> = r["live"]["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| u(&a[2]))
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

const HEALTHY_REQUESTS: [&str; 10] = [
    "request 0 done",
    "request 1 done",
    "request 2 done",
    "request 3 done",
    "request 4 done",
    "request 5 done",
    "request 6 done",
    "request 7 done",
    "request 8 done",
    "request 9 done",
];

// ---- the allocator alone ----

#[test]
fn the_allocators_rules_hold() {
    let dir = scratch("selftest");
    let r = run("caching_selftest", &[], &[], false, &dir);
    let out = r.stdout();
    assert_eq!(r.code(), 0, "{out}{}", r.stderr());
    assert!(!out.contains("FAIL"), "{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("ok ")).count() >= 25,
        "{out}"
    );
    // And the same under the shim: it changes nothing the allocator sees.
    let r = run("caching_selftest", &[], &[], true, &dir);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
}

// ---- allocation patterns, checked on the reports ----

#[test]
fn healthy_segments_grow_with_new_maxima_then_stay_flat() {
    let s = sim(
        "healthy-pattern",
        &["--scenario", "healthy", "--counters"],
        &[],
    );
    assert_eq!(s.run.code(), 0, "{}", s.run.stderr());
    let exit = s.run.report("exit");

    // The weights of the H200 fixture's model, through the cache: 6 segments
    // of 94,371,840 B in all, as PyTorch made them on the real GPU.
    assert_eq!(s.e("weights_segments"), 6);
    assert_eq!(s.e("weights_reserved"), 94_371_840);
    assert_eq!(s.at("serve").reserved, 94_371_840);

    // What CUDA saw is the allocator's segments, nothing else.
    let m = &device(&exit, 0)["memory"];
    assert_eq!(u(&m["live_bytes"]), s.e("reserved"));
    assert_eq!(u(&m["live_count"]), s.e("segments"));
    assert_eq!(exit["calls"]["cudaMalloc"], s.e("cuda_mallocs"));
    assert!(exit["calls"].get("cudaFree").is_none(), "{}", exit["calls"]);
    assert_eq!(live_sizes(&exit), s.segment_sizes());

    // Reserved grows at the first request and at each new maximum
    // (192, 320, 448, 576 tokens), then stays flat over the repeats.
    let r: Vec<u64> = HEALTHY_REQUESTS.iter().map(|l| s.at(l).reserved).collect();
    assert!(r[0] > s.at("serve").reserved);
    for i in 1..4 {
        assert!(r[i] > r[i - 1], "request {i}: {r:?}");
    }
    assert!(r[4..].iter().all(|&x| x == r[3]), "{r:?}");
    // Tensors all come back: allocated returns to the weights every time.
    for l in HEALTHY_REQUESTS {
        assert_eq!(s.at(l).allocated, s.e("weights_allocated"), "{l}");
    }

    // Each marker point of the timeline: the shim's live bytes are the
    // allocator's reserved, and the framework counters are what it reported.
    let points = marker_points(&exit);
    assert_eq!(points.len(), s.at.len());
    for (p, a) in points.iter().zip(&s.at) {
        assert_eq!(p.0, a.label);
        if a.label == "load" {
            continue; // before the first allocation: no device yet
        }
        assert_eq!((p.1, p.2), (a.reserved, a.segments), "{}", a.label);
        assert_eq!(p.3, Some((a.allocated, a.reserved)), "{}", a.label);
    }
}

#[test]
fn warmup_keeps_a_workspace_once() {
    let s = sim(
        "warmup-pattern",
        &["--scenario", "warmup", "--counters"],
        &[],
    );
    assert_eq!(s.run.code(), 0, "{}", s.run.stderr());
    let ws = s.e("workspace_bytes");
    assert_eq!(ws, 32 * MIB);
    for l in HEALTHY_REQUESTS {
        assert_eq!(s.at(l).allocated, s.e("weights_allocated") + ws, "{l}");
    }
    let r: Vec<u64> = HEALTHY_REQUESTS.iter().map(|l| s.at(l).reserved).collect();
    assert!(r[4..].iter().all(|&x| x == r[3]), "{r:?}");
}

#[test]
fn a_leak_and_unbounded_growth_behind_the_cache_show_in_the_counters() {
    let s = sim("leak-pattern", &["--scenario", "leak", "--counters"], &[]);
    let a: Vec<u64> = HEALTHY_REQUESTS.iter().map(|l| s.at(l).allocated).collect();
    for w in a.windows(2) {
        assert_eq!(w[1] - w[0], 64 * MIB, "{a:?}");
    }
    assert_eq!(s.e("leaked_bytes"), 10 * 64 * MIB);
    // Over the repeats, each leaked tensor is a 64 MiB segment of its own.
    let r: Vec<u64> = HEALTHY_REQUESTS.iter().map(|l| s.at(l).reserved).collect();
    for w in r[3..].windows(2) {
        assert_eq!(w[1] - w[0], 64 * MIB, "{r:?}");
    }

    let s = sim(
        "unbounded-pattern",
        &["--scenario", "unbounded", "--counters"],
        &[],
    );
    let a: Vec<u64> = HEALTHY_REQUESTS.iter().map(|l| s.at(l).allocated).collect();
    // 64 decoded tokens x 256 KiB per request.
    for w in a.windows(2) {
        assert_eq!(w[1] - w[0], 64 * 256 * 1024, "{a:?}");
    }
    assert_eq!(s.e("unbounded_bytes"), 10 * 64 * 256 * 1024);
    // In 2 MiB small-pool segments: many of them.
    let exit = s.run.report("exit");
    let small = live_sizes(&exit).iter().filter(|&&x| x == 2 * MIB).count() as u64;
    assert!(small >= s.e("unbounded_bytes") / (2 * MIB), "{small}");
}

#[test]
fn fragmentation_ends_in_an_oom_with_memory_reserved_but_unallocated() {
    let s = sim(
        "frag-pattern",
        &["--scenario", "fragmentation", "--counters-every-step"],
        &[("SIMCUDA_DEVICE_MEM", "2GiB")],
    );
    assert_eq!(s.run.code(), 1, "{}", s.run.stderr());
    let out = s.run.stdout();
    assert!(
        out.contains("is reserved by PyTorch but unallocated"),
        "{out}"
    );
    // Two 9 MiB tensors per 20 MiB segment, every other one freed.
    assert_eq!(s.e("frag_freed"), s.e("frag_tensors") / 2);
    assert!(s.e("frag_tensors") > 100);
    assert!(s.e("frag_largest_free_block") < s.e("frag_request_bytes"));
    let unallocated = s.e("frag_before_reserved") - s.e("frag_before_allocated");
    assert!(unallocated > 700 * MIB, "{unallocated}");

    let oom = s.run.report("oom");
    assert_eq!(u(&oom["oom"]["size"]), 40 * MIB);
    assert_eq!(u(&oom["oom"]["live_bytes"]), s.e("frag_before_reserved"));
    let exit = s.run.report("exit");
    // The failed cudaMalloc, the cache given back (whole free segments only),
    // the retry failing too.
    assert_eq!(
        exit["failure_counts"]["cudaMalloc"]["2"],
        s.e("frag_cuda_failures")
    );
    assert_eq!(s.e("frag_cuda_failures"), 2);
    assert_eq!(exit["calls"]["cudaFree"], s.e("frag_released_segments"));
    assert!(s.e("frag_released_segments") > 0);
    assert_eq!(
        u(&device(&exit, 0)["memory"]["live_bytes"]),
        s.e("oom_reserved")
    );
    assert_eq!(exit["out_of_memory"]["recovered"], false);
    // The framework's counters last reported: the state before the request.
    let last = exit["timeline"].as_array().unwrap().last().unwrap().clone();
    let fw = &last["devices"][0]["framework"];
    assert_eq!(u(&fw["allocated_bytes"]), s.e("frag_before_allocated"));
    assert_eq!(u(&fw["reserved_bytes"]), s.e("frag_before_reserved"));
}

#[test]
fn vllm_lifecycle_profiles_then_serves_from_the_cache() {
    let s = sim("vllm-pattern", &["--scenario", "vllm", "--counters"], &[]);
    assert_eq!(s.run.code(), 0, "{}", s.run.stderr());
    let exit = s.run.report("exit");
    // The profile's activations were given back by empty_cache.
    assert!(s.e("cuda_frees") > 0);
    assert_eq!(exit["calls"]["cudaFree"], s.e("cuda_frees"));
    assert_eq!(exit["calls"]["cudaMalloc"], s.e("cuda_mallocs"));
    assert_eq!(s.at("kv_cache").reserved, s.at("profile").reserved);
    // One KV tensor per layer, each its own segment rounded to 2 MiB.
    let kv = s.e("kv_segment_bytes");
    assert_eq!(live_sizes(&exit).iter().filter(|&&x| x == kv).count(), 32);
    assert!(s.e("kv_tensor_bytes") <= kv && kv - s.e("kv_tensor_bytes") < 2 * MIB);
    // The graph pool is kept.
    assert!(s.e("graph_pool_reserved") > 0);
    // Serving: flat, to the byte, from `serve` on.
    let points = marker_points(&exit);
    let serve = points.iter().position(|p| p.0 == "serve").unwrap();
    assert_eq!(points[serve].1, s.e("serve_reserved"));
    for p in &points[serve..] {
        assert_eq!((p.1, p.2), (points[serve].1, points[serve].2), "{}", p.0);
    }
    for (p, a) in points.iter().zip(&s.at).skip(1) {
        assert_eq!(p.3, Some((a.allocated, a.reserved)), "{}", a.label);
    }
    assert_eq!(
        u(&device(&exit, 0)["memory"]["live_bytes"]),
        s.e("reserved")
    );
}

#[test]
fn expandable_segments_map_granules_as_pytorch_does() {
    let s = sim(
        "expandable-pattern",
        &["--scenario", "healthy", "--expandable", "--counters"],
        &[],
    );
    assert_eq!(s.run.code(), 0, "{}", s.run.stderr());
    let exit = s.run.report("exit");
    // One reservation per pool (small, large) through cudaGetDriverEntryPoint,
    // 2 MiB granules mapped = memory_reserved(), no cudaMalloc at all.
    assert_eq!(exit["calls"]["cuMemAddressReserve"], 2);
    assert!(exit["calls"].get("cudaMalloc").is_none());
    assert_eq!(exit["calls"]["cuMemCreate"], s.e("cuda_mallocs"));
    assert_eq!(u(&exit["vmm"]["mapped_bytes"]), s.e("reserved"));
    assert_eq!(u(&exit["vmm"]["physical_bytes"]), s.e("reserved"));
    assert_eq!(s.e("reserved") % (2 * MIB), 0);
    let r: Vec<u64> = HEALTHY_REQUESTS.iter().map(|l| s.at(l).reserved).collect();
    assert!(r[4..].iter().all(|&x| x == r[3]), "{r:?}");
    // Granules are mapped to fit, not 20 MiB segments: less than the default.
    let plain = sim("expandable-vs-plain", &["--scenario", "healthy"], &[]);
    assert!(s.e("reserved") < plain.e("reserved"));
}

// ---- the diagnosis ----

/// Healthy runs through the cache, checked: nothing critical, exit 0.
fn healthy(runs: &[(&str, Vec<&str>)]) {
    for (name, args) in runs {
        let s = sim(name, args, &[]);
        assert_eq!(s.run.code(), 0, "{name}: {}", s.run.stderr());
        let c = check_tiny(&s);
        assert_eq!(
            c.critical(),
            Vec::<String>::new(),
            "{name}: {}",
            c.findings()
        );
        assert_eq!(c.code, 0, "{name}");
    }
}

#[test]
fn healthy_caching_runs_are_not_leaks_by_segments() {
    healthy(&[
        ("healthy", vec!["--scenario", "healthy"]),
        ("warmup", vec!["--scenario", "warmup"]),
        (
            "healthy-expandable",
            vec!["--scenario", "healthy", "--expandable"],
        ),
    ]);
}

#[test]
fn healthy_caching_runs_are_not_leaks_by_counters() {
    healthy(&[
        (
            "healthy-counters",
            vec!["--scenario", "healthy", "--counters"],
        ),
        (
            "healthy-every-step",
            vec!["--scenario", "healthy", "--counters-every-step"],
        ),
        (
            "warmup-counters",
            vec!["--scenario", "warmup", "--counters"],
        ),
    ]);
}

#[test]
fn the_vllm_lifecycle_is_healthy() {
    for (name, args) in [
        ("vllm", vec!["--scenario", "vllm"]),
        ("vllm-counters", vec!["--scenario", "vllm", "--counters"]),
    ] {
        let s = sim(name, &args, &[]);
        let c = check(&s.run.reports, Path::new("llama-3.1-8b"));
        assert_eq!(
            c.critical(),
            Vec::<String>::new(),
            "{name}: {}",
            c.findings()
        );
        assert_eq!(c.code, 0, "{name}");
    }
}

/// Per-layer weights (fused qkv, o, gate_up, down: 32 each, sizes a multiple
/// of the page) are not a paged KV cache: the KV cache is.
#[test]
fn the_vllm_kv_cache_is_told_from_per_layer_weights() {
    let s = sim("vllm-kv", &["--scenario", "vllm"], &[]);
    let c = check(&s.run.reports, Path::new("llama-3.1-8b"));
    // What kvscope can see: 32 segments of the tensor rounded up to 2 MiB.
    let tokens = s.e("kv_segment_bytes") / s.e("page_bytes") * 16;
    assert_eq!(c.finding("kv_cache")["numbers"]["capacity_tokens"], tokens);
    assert_eq!(
        c.finding("kv_cache")["numbers"]["kv_bytes"],
        32 * s.e("kv_segment_bytes")
    );
}

#[test]
fn a_leak_behind_the_cache_is_diagnosed_at_its_rate_by_counters() {
    // With the framework's counters: the exact rate, said to come from them.
    let s = sim("leak-counters", &["--scenario", "leak", "--counters"], &[]);
    let c = check_tiny(&s);
    assert_eq!(c.critical(), ["leak_per_request"], "{}", c.findings());
    let f = c.finding("leak_per_request");
    assert_eq!(f["numbers"]["bytes_per_request"], 64 * MIB, "{f:#}");
    assert_eq!(f["numbers"]["requests"], 10);
    assert_eq!(f["numbers"]["growth_bytes"], s.e("leaked_bytes"), "{f:#}");
    assert!(cites_framework_counters(f), "{f:#}");
    assert_eq!(c.code, 1);
}

#[test]
fn a_leak_behind_the_cache_is_diagnosed_at_about_its_rate_by_segments() {
    // Segments only: found, at about the rate (the first requests' growth
    // is the cache's, not the leak's; over the repeats it is 64 MiB exactly).
    let s = sim("leak-segments", &["--scenario", "leak"], &[]);
    let c = check_tiny(&s);
    assert_eq!(c.critical(), ["leak_per_request"], "{}", c.findings());
    let per = u(&c.finding("leak_per_request")["numbers"]["bytes_per_request"]);
    assert!(
        (64 * MIB * 95 / 100..=64 * MIB * 115 / 100).contains(&per),
        "{per}"
    );
    assert_eq!(c.code, 1);
}

#[test]
fn unbounded_growth_behind_the_cache_is_diagnosed_by_counters() {
    let s = sim(
        "unbounded-counters",
        &["--scenario", "unbounded", "--counters"],
        &[],
    );
    let c = check_tiny(&s);
    assert_eq!(c.critical(), ["unbounded_growth"], "{}", c.findings());
    let f = c.finding("unbounded_growth");
    // 10 requests x 64 decoded tokens x 256 KiB.
    assert_eq!(
        f["numbers"]["growth_bytes"],
        s.e("unbounded_bytes"),
        "{f:#}"
    );
    assert_eq!(
        f["numbers"]["bytes_per_request"],
        s.e("unbounded_bytes") / 10,
        "{f:#}"
    );
    assert!(cites_framework_counters(f), "{f:#}");
}

#[test]
fn unbounded_growth_behind_the_cache_is_diagnosed_by_segments() {
    let s = sim("unbounded-segments", &["--scenario", "unbounded"], &[]);
    let c = check_tiny(&s);
    assert_eq!(c.critical(), ["unbounded_growth"], "{}", c.findings());
    assert_eq!(c.code, 1);
}

/// The fragmentation scenario, checked: one critical out-of-memory finding
/// for the 40 MiB request (nothing else: the requests before it were healthy).
fn fragmentation_diagnosed(name: &str, args: &[&str]) -> (Sim, Value) {
    let s = sim(name, args, &[("SIMCUDA_DEVICE_MEM", "2GiB")]);
    let c = check_tiny(&s);
    let critical = c.critical();
    assert_eq!(critical.len(), 1, "{name}: {}", c.findings());
    assert!(
        ["out_of_memory", "fragmentation"].contains(&critical[0].as_str()),
        "{critical:?}"
    );
    let f = c.finding(&critical[0]).clone();
    assert_eq!(f["numbers"]["failed_bytes"], 40 * MIB, "{f:#}");
    assert_eq!(c.code, 1);
    (s, f)
}

#[test]
fn fragmentation_is_diagnosed_as_an_oom_by_segments() {
    fragmentation_diagnosed("frag", &["--scenario", "fragmentation"]);
}

#[test]
fn fragmentation_is_diagnosed_with_memory_reserved_but_unallocated_by_counters() {
    let (s, f) = fragmentation_diagnosed(
        "frag-counters",
        &["--scenario", "fragmentation", "--counters-every-step"],
    );
    // The memory PyTorch holds but does not use, named in bytes: before the
    // cache was given back, or after.
    let want = [
        s.e("frag_before_reserved") - s.e("frag_before_allocated"),
        s.e("oom_unallocated"),
    ];
    let named = f["numbers"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_u64)
        .any(|v| want.contains(&v));
    assert!(named, "want one of {want:?} in {f:#}");
    assert!(cites_framework_counters(&f), "{f:#}");
}
