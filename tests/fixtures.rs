//! `kvscope check` on reports written on a real H200 under PyTorch 2.11
//! (../shared/fixtures/h200, see its README): a healthy server is not a
//! leak, a real leak is found at its true rate, an out-of-memory failure in
//! fragmented segments is not "weights loaded twice"; and the same reports
//! with PyTorch's counters attached at every marker, as the Python helper
//! writes them, are judged tensor-level.

mod common;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

fn fixtures() -> PathBuf {
    let d = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/h200"
    ));
    assert!(
        d.join("README.md").is_file(),
        "the real-GPU fixtures are missing: expected {} (the shared fixtures beside the checkout)",
        d.display()
    );
    d
}

fn scenario(name: &str, file: &str) -> PathBuf {
    fixtures().join(name).join(file)
}

struct Checked {
    json: Value,
    text: String,
    code: i32,
}

impl Checked {
    fn names(&self) -> Vec<(String, String)> {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_string(),
                    f["severity"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
    fn has(&self, name: &str) -> bool {
        self.names().iter().any(|(n, _)| n == name)
    }
    fn finding(&self, name: &str) -> &Value {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name}:\n{}", self.text))
    }
    fn critical(&self) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|(_, s)| s == "critical")
            .map(|(n, _)| n)
            .collect()
    }
}

/// `kvscope check REPORT --model config.json`, as text and as JSON.
fn check(report: &Path) -> Checked {
    let config = fixtures().join("config.json");
    let run = |json: bool| {
        let mut cmd = Command::new(kvscope_bin());
        cmd.arg("check").arg(report).arg("--model").arg(&config);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = run(true);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let text = String::from_utf8_lossy(&run(false).stdout).into_owned();
    Checked {
        json,
        text,
        code: out.status.code().unwrap(),
    }
}

fn within(got: &Value, want: f64, frac: f64) -> bool {
    got.as_f64()
        .is_some_and(|g| (g - want).abs() <= want * frac)
}

fn read(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn write(name: &str, report: &Value) -> PathBuf {
    let p = scratch(name).join("kvscope-exit.json");
    std::fs::write(&p, serde_json::to_vec(report).unwrap()).unwrap();
    p
}

/// The report with PyTorch's counters on each program marker's timeline
/// point (torch-markers.json, matched by label in order): what the Python
/// helper's `mark()` attaches.
fn with_counters(name: &str) -> PathBuf {
    let mut r = read(&scenario(name, "kvscope-exit.json"));
    let torch = read(&scenario(name, "torch-markers.json"));
    let torch = torch.as_array().unwrap();
    let api: Vec<(String, f64)> = r["markers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["source"] == "api")
        .map(|m| {
            (
                m["label"].as_str().unwrap().to_string(),
                m["t_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        api.len(),
        torch.len(),
        "{name}: one torch reading per marker"
    );
    let timeline = r["timeline"].as_array_mut().unwrap();
    for ((label, t), counters) in api.iter().zip(torch) {
        assert_eq!(counters["label"], label.as_str());
        let point = timeline
            .iter_mut()
            .find(|p| p["marker"] == label.as_str() && p["t_ms"].as_f64().unwrap() >= *t)
            .unwrap_or_else(|| panic!("{name}: no timeline point for `{label}`"));
        let t_ms = point["t_ms"].clone();
        for d in point["devices"].as_array_mut().unwrap() {
            d["framework"] = json!({
                "allocated_bytes": counters["allocated"],
                "reserved_bytes": counters["reserved"],
                "sampled_t_ms": t_ms,
            });
        }
    }
    write(&format!("{name}-counters"), &r)
}

/// The report without the program's markers (the shim's own `idle` points stay).
fn without_markers(name: &str) -> PathBuf {
    let mut r = read(&scenario(name, "kvscope-exit.json"));
    let api: Vec<String> = r["markers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["source"] == "api")
        .map(|m| m["label"].as_str().unwrap().to_string())
        .collect();
    r["markers"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["source"] != "api");
    // Phases count the markers before an allocation.
    let kept: Vec<f64> = r["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["t_ms"].as_f64().unwrap())
        .collect();
    let columns = r["live"]["columns"].clone();
    let col = |name: &str| {
        columns
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c == name)
            .unwrap()
    };
    let (t_col, phase_col) = (col("t_ms"), col("phase"));
    for a in r["live"]["allocations"].as_array_mut().unwrap() {
        let t = a[t_col].as_f64().unwrap();
        a[phase_col] = json!(kept.iter().filter(|&&m| m < t).count());
    }
    for p in r["timeline"].as_array_mut().unwrap() {
        if p["marker"]
            .as_str()
            .is_some_and(|m| api.iter().any(|a| a == m) && m != "idle")
        {
            p["marker"] = Value::Null;
        }
    }
    write(&format!("{name}-unmarked"), &r)
}

#[test]
fn a_healthy_server_is_not_a_leak() {
    let c = check(&scenario("healthy", "kvscope-exit.json"));
    assert_eq!(c.critical(), Vec::<String>::new(), "{}", c.text);
    assert_eq!(c.code, 0, "{}", c.text);
    assert!(
        !c.has("leak_per_request") && !c.has("unbounded_growth"),
        "{}",
        c.text
    );
    // Segment-level: ~128 MB of segments and workspaces after request 0, the
    // cache following the first 320- and 576-token requests.
    let w = c.finding("allocator_warmup");
    assert_eq!(w["numbers"]["view"], "segment_level");
    assert!(
        within(&w["numbers"]["warmup_bytes"], 128_083_716.0, 0.01),
        "{w}"
    );
    let h = c.finding("allocator_high_water");
    assert!(
        within(&h["numbers"]["high_water_bytes"], 24.0 * MIB, 0.01),
        "{h}"
    );
    assert!(c
        .text
        .contains("segment-level (CUDA calls; PyTorch's cache included)"));
}

#[test]
fn a_real_leak_is_found_at_its_true_rate() {
    let c = check(&scenario("leak", "kvscope-exit.json"));
    let f = c.finding("leak_per_request");
    assert_eq!(f["severity"], "critical", "{}", c.text);
    assert!(
        within(&f["numbers"]["bytes_per_request"], 64.0 * MIB, 0.03),
        "{f}"
    );
    assert_eq!(f["numbers"]["view"], "segment_level");
    assert_eq!(c.code, 1);
}

#[test]
fn an_oom_in_fragmented_segments_is_not_a_second_copy_of_the_weights() {
    for file in ["kvscope-oom.json", "kvscope-exit.json"] {
        let c = check(&scenario("fragoom", file));
        assert!(c.has("out_of_memory"), "{file}: {}", c.text);
        assert_eq!(c.finding("out_of_memory")["severity"], "critical");
        assert!(!c.has("baseline_too_high"), "{file}: {}", c.text);
    }
}

#[test]
fn with_pytorchs_counters_the_verdicts_are_tensor_level() {
    let c = check(&with_counters("healthy"));
    assert_eq!(c.critical(), Vec::<String>::new(), "{}", c.text);
    assert_eq!(c.code, 0);
    assert!(
        !c.has("leak_per_request") && !c.has("unbounded_growth"),
        "{}",
        c.text
    );
    // memory_allocated: 89.3 MB at `serve`, 122.8 MB after request 0, then flat.
    let w = c.finding("allocator_warmup");
    assert_eq!(w["numbers"]["view"], "tensor_level", "{}", c.text);
    assert!(
        within(&w["numbers"]["warmup_bytes"], 33_558_528.0, 0.01),
        "{w}"
    );
    assert!(
        c.text.contains("tensor-level (PyTorch's counters)"),
        "{}",
        c.text
    );

    let c = check(&with_counters("leak"));
    let f = c.finding("leak_per_request");
    assert_eq!(f["severity"], "critical", "{}", c.text);
    assert_eq!(f["numbers"]["view"], "tensor_level");
    assert!(
        within(&f["numbers"]["bytes_per_request"], 64.0 * MIB, 0.03),
        "{f}"
    );
    assert!(
        c.text.contains("tensor-level (PyTorch's counters)"),
        "{}",
        c.text
    );
}

#[test]
fn without_markers_the_phases_are_inferred_and_never_critical() {
    for name in ["healthy", "leak"] {
        let c = check(&without_markers(name));
        assert_eq!(c.critical(), Vec::<String>::new(), "{name}: {}", c.text);
        assert!(c.text.contains("phases inferred"), "{name}: {}", c.text);
    }
}

#[test]
fn with_counters_at_the_oom_the_finding_names_the_cache_pytorch_could_not_use() {
    if !python() {
        eprintln!("python3 not found: skipped (set KVSCOPE_REQUIRE_PYTHON to fail instead)");
        return;
    }
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/torch_oom_counters.py"
        ))
        .arg(scenario("fragoom", "torch-snapshot.pickle.gz"))
        .output()
        .unwrap();
    common::assert_ok(&out);
    let at_oom: Value = serde_json::from_slice(&out.stdout).unwrap();
    for file in ["kvscope-oom.json", "kvscope-exit.json"] {
        let mut r = read(&scenario("fragoom", file));
        let failed = r["failures"][0]["t_ms"].as_f64().unwrap();
        // The timeline point closest to the failure carries the counters.
        let point = r["timeline"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .filter(|p| !p["devices"].as_array().unwrap().is_empty())
            .min_by(|a, b| {
                let d = |p: &Value| (p["t_ms"].as_f64().unwrap() - failed).abs();
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        let t_ms = point["t_ms"].clone();
        point["devices"][0]["framework"] = json!({
            "allocated_bytes": at_oom["allocated"],
            "reserved_bytes": at_oom["reserved"],
            "sampled_t_ms": t_ms,
        });
        let c = check(&write(&format!("fragoom-counters-{file}"), &r));
        assert!(!c.has("baseline_too_high"), "{file}: {}", c.text);
        let f = c.finding("fragmentation");
        assert_eq!(f["severity"], "critical");
        assert!(
            within(
                &f["numbers"]["framework_unallocated_bytes"],
                13.92 * GIB,
                0.01
            ),
            "{file}: {f}"
        );
        assert!(
            c.text
                .contains("13.9 GiB reserved by PyTorch but unallocated"),
            "{file}: {}",
            c.text
        );
    }
}

/// `kvscope check REPORT --json` without a model: the KV cache by shape only.
fn check_unmodelled(report: &Path) -> Value {
    let out = Command::new(kvscope_bin())
        .arg("check")
        .arg(report)
        .arg("--json")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn part(breakdown: &Value, category: &str) -> u64 {
    breakdown["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["category"] == category)
        .unwrap_or_else(|| panic!("no {category}: {breakdown}"))["bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_drivers_rounding_is_counted_by_granule_not_per_allocation() {
    // cuBLAS's four small cuMemAlloc_v2 (1 KiB, 128 KiB, 24.75 KiB, 4 B) sit
    // side by side in one 2 MiB granule; every other plain allocation is a
    // whole number of granules.
    let path = scenario("healthy", "kvscope-exit.json");
    let r = read(&path);
    let small: Vec<(u64, u64)> = r["live"]["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a[3] == "cuMemAlloc_v2" || a[3] == "cudaMalloc")
        .map(|a| (a[1].as_u64().unwrap(), a[2].as_u64().unwrap()))
        .filter(|&(_, size)| size % (2 << 20) != 0)
        .collect();
    assert_eq!(small.len(), 4, "{small:?}");
    let granule = |a: u64| a / (2 << 20);
    assert!(
        small
            .iter()
            .all(|&(a, s)| granule(a) == granule(small[0].0) && granule(a + s - 1) == granule(a)),
        "{small:?}"
    );
    let want = (2u64 << 20) - small.iter().map(|s| s.1).sum::<u64>();
    let c = check(&path);
    let b = &c.json["processes"][0]["devices"][0]["breakdown"];
    assert_eq!(part(b, "allocator overhead"), want, "{}", c.text);
    // What the rounding does not take is the context's.
    assert_eq!(
        b["used_bytes"].as_u64().unwrap(),
        b["tracked_bytes"].as_u64().unwrap() + want + part(b, "CUDA context & untracked"),
        "{b}"
    );
}

#[test]
fn a_leaks_next_step_points_where_the_api_and_phase_are() {
    let c = check(&scenario("leak", "kvscope-exit.json"));
    let f = c.finding("leak_per_request");
    let next = f["next"].as_str().unwrap();
    let evidence = f["evidence"].to_string();
    // The finding's evidence gives sizes only: the hint must not send the
    // user "above" for the api and phase.
    assert!(!evidence.contains("cudaMalloc"), "{evidence}");
    assert!(!next.contains("above"), "{next}");
    assert!(next.contains("kvscope report"), "{next}");
}

#[test]
fn equal_tensors_with_no_weights_before_them_are_not_a_kv_cache() {
    // 17 tensors of 8 GiB until out of memory, nothing else: no model was
    // loaded, so nothing was "made after the weights".
    let j = check_unmodelled(&fixtures().join("allocators/torch-oom.json"));
    let d = &j["processes"][0]["devices"][0];
    assert_eq!(d["kv_cache"], json!([]), "{d}");
    assert_eq!(part(&d["breakdown"], "KV cache"), 0, "{d}");
    assert_eq!(j["findings"][0]["name"], "out_of_memory", "{j}");
}

#[test]
fn pinned_host_memory_is_not_listed_on_a_device() {
    // The report heads it "host (pinned memory, on no device)": its rows
    // must not then say "device 0" (the device current when it was asked).
    for (report, rows_expected) in [
        // In the largest allocations' table and by entry point.
        (
            fixtures().join("allocators/c-client-shared-cudart-exit.json"),
            2,
        ),
        // By entry point only (the table lists the 10 largest kinds).
        (scenario("healthy", "kvscope-exit.json"), 2),
    ] {
        let out = Command::new(kvscope_bin())
            .arg("report")
            .arg(&report)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("host (pinned memory, on no device)"),
            "{text}"
        );
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| {
                ["cuMemHostAlloc", "cudaHostAlloc", "cudaMallocHost"]
                    .iter()
                    .any(|a| l.contains(a))
            })
            .collect();
        assert_eq!(rows.len(), rows_expected, "{text}");
        for l in rows {
            assert!(
                l.contains("host") && !l.contains("device 0") && !l.contains(" 0  "),
                "{l}\n{text}"
            );
        }
    }
}

#[test]
fn a_high_water_mark_judged_with_counters_says_it_is_pytorchs_reserved_memory() {
    // memory_allocated() rose 4 KiB after request 1 and 8 KiB after request
    // 3; memory_reserved() rose 4 MiB and 20 MiB: the figures given are the
    // cache's, and the finding must say so rather than call them tensors.
    let c = check(&with_counters("healthy"));
    let h = c.finding("allocator_high_water");
    assert_eq!(h["numbers"]["view"], "tensor_level", "{h}");
    assert!(
        within(&h["numbers"]["high_water_bytes"], 24.0 * MIB, 0.01),
        "{h}"
    );
    assert_eq!(h["numbers"]["on_reserved"], true, "{h}");
    assert!(
        h["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("memory_reserved()")),
        "{h}"
    );
    // Segment-level there is no such note: the CUDA calls are the cache.
    let c = check(&scenario("healthy", "kvscope-exit.json"));
    let h = c.finding("allocator_high_water");
    assert_eq!(h["numbers"]["on_reserved"], false, "{h}");
}
