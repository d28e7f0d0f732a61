//! The drift guard of the report schema: every field a report can hold is
//! documented in docs/report-schema.md and is looked at by `validate` (or is
//! on the short list in `drift/unchecked.rs` of fields nothing can be
//! implausible about).
//!
//! The fields come from the Rust definition, not a list kept by hand: a
//! report with every optional field present and every list non-empty is
//! serialized and walked. A field added to `src/report/mod.rs` shows up here
//! as null or `[]` (fill it in `full()`), then as undocumented or unchecked.

use crate::report::*;
use serde_json::Value;
use std::collections::BTreeMap;

mod unchecked;
use unchecked::UNCHECKED;

/// Maps whose keys are data (entry points, codes, variables), not fields.
const MAPS: &[&str] = &["calls", "failure_counts", "process.env"];

fn row(size: u64) -> LiveAlloc {
    LiveAlloc {
        device: 0,
        address: 0x7000_0000_0000,
        size,
        api: Api::CudaMalloc,
        stream: 7,
        t_ms: 5.0,
        seq: 1,
        thread: 1234,
        phase: 1,
        caller: Some(0),
    }
}

fn space() -> SpaceStats {
    SpaceStats {
        live_bytes: 1 << 20,
        live_count: 1,
        peak_bytes: 2 << 20,
        peak_t_ms: Some(3.0),
        allocated_bytes: 3 << 20,
        allocs: 2,
        freed_bytes: 2 << 20,
        frees: 1,
        failures: 1,
    }
}

/// A plausible report with every optional field present and every list non-empty.
fn full() -> Report {
    Report {
        schema: SCHEMA.into(),
        reason: Some(Reason::Oom),
        reason_detail: Some("cudaMalloc".into()),
        modes: vec!["preload".into()],
        process: Process {
            run_id: Some("gpu-1-4242-1700000000000".into()),
            pid: 4242,
            ppid: 1,
            cmdline: vec!["python".into()],
            exe: Some("/usr/bin/python3".into()),
            hostname: Some("gpu-1".into()),
            start_unix_ms: 1_700_000_000_000,
            launch: Launch {
                rank: Some(1),
                local_rank: Some(1),
                world_size: Some(2),
                visible_devices: Some("0,1".into()),
            },
            env: [("KVSCOPE_OUT".to_string(), "/tmp".to_string())].into(),
        },
        shim: ShimInfo {
            version: "0.1.0".into(),
            sample_ms: 100,
            idle_ms: 2000,
            event_capacity: 256,
            live_limit: 10_000,
            failure_limit: 64,
            stack_min: 64 << 20,
            out_dir: "/tmp".into(),
            out_dir_note: Some("fallback".into()),
        },
        written_unix_ms: 1_700_000_001_000,
        t_ms: 1000.0,
        devices: vec![DeviceStats {
            device: 0,
            total_bytes: Some(80 << 30),
            free_bytes: Some(70 << 30),
            free_sampled_t_ms: Some(900.0),
            memory: space(),
            managed: space(),
        }],
        host: space(),
        calls: [("cudaMalloc".to_string(), 3)].into(),
        failure_counts: [(
            "cudaMalloc".to_string(),
            [("2".to_string(), 1)].into_iter().collect(),
        )]
        .into(),
        failures: vec![Failure {
            t_ms: 10.0,
            api: "cudaMalloc".into(),
            device: 0,
            size: 1 << 30,
            code: 2,
            code_name: "cudaErrorMemoryAllocation".into(),
            thread: 1234,
        }],
        anomalies: Anomalies {
            untracked_frees: 1,
            double_frees: 1,
            size_mismatched_frees: 1,
            unrouted_entry_points: vec!["cuFoo@12000/0".into()],
            notes: vec!["a note".into()],
        },
        live: Live {
            count: 1,
            bytes: 1 << 20,
            truncated: false,
            columns: LIVE_COLUMNS.iter().map(|c| c.to_string()).collect(),
            allocations: vec![row(1 << 20)],
            by_kind: vec![KindTotal {
                device: 0,
                space: Some(Space::Device),
                api: "cudaMalloc".into(),
                count: 1,
                bytes: 1 << 20,
            }],
            by_stream: vec![StreamTotal {
                device: 0,
                stream: 7,
                count: 1,
                bytes: 1 << 20,
            }],
            by_size_class: vec![SizeClass {
                min_bytes: 1 << 20,
                max_bytes: (2 << 20) - 1,
                count: 1,
                bytes: 1 << 20,
            }],
            by_caller: vec![CallerTotal {
                device: 0,
                caller: "libcublas.so.12".into(),
                count: 1,
                bytes: 1 << 20,
            }],
        },
        vmm: Vmm {
            reserved_bytes: 4 << 20,
            physical_bytes: 2 << 20,
            mapped_bytes: 2 << 20,
            reservations: vec![VmmRange {
                address: 0x7100_0000_0000,
                size: 4 << 20,
                mapped_bytes: 2 << 20,
            }],
            handles: vec![VmmHandle {
                handle: 99,
                device: 0,
                size: 2 << 20,
                released: false,
                mappings: 1,
                t_ms: 4.0,
            }],
        },
        pools: vec![PoolStats {
            device: 0,
            handle: 77,
            default_pool: true,
            reserved_bytes: 4 << 20,
            used_bytes: 2 << 20,
            reserved_high_bytes: 4 << 20,
            used_high_bytes: 2 << 20,
            release_threshold: 0,
            sampled_t_ms: 900.0,
        }],
        markers: vec![Marker {
            t_ms: 2.0,
            label: "serve".into(),
            source: "api".into(),
        }],
        timeline: vec![Sample {
            t_ms: 2.0,
            marker: Some("serve".into()),
            devices: vec![DeviceSample {
                device: 0,
                live_bytes: 1 << 20,
                live_count: 1,
                max_live_bytes: 1 << 20,
                reserved_bytes: Some(3 << 20),
                device_used_bytes: Some(10 << 30),
                framework: Some(FrameworkSample {
                    allocated_bytes: 1 << 20,
                    reserved_bytes: 2 << 20,
                    sampled_t_ms: 1.5,
                }),
            }],
        }],
        events: vec![Event {
            t_ms: 9.0,
            op: "fail".into(),
            api: "cudaMalloc".into(),
            device: 0,
            address: 0,
            size: 1 << 30,
            code: 2,
            thread: 1234,
            caller: Some(0),
        }],
        oom: Some(Oom {
            t_ms: 10.0,
            api: "cudaMalloc".into(),
            device: 0,
            size: 1 << 30,
            code: 2,
            thread: 1234,
            device_free_bytes: Some(100 << 20),
            device_total_bytes: Some(80 << 30),
            live_bytes: 1 << 20,
            live_count: 1,
            largest: vec![row(1 << 20)],
        }),
        out_of_memory: Some(OomHistory {
            failures: 2,
            first_t_ms: 10.0,
            allocations_after: 1,
            recovered: true,
        }),
        callers: vec![CallSite {
            address: 0x7f00_1234_5678,
            file: "/usr/lib/libcublas.so.12".into(),
            symbol: Some("cublasCreate_v2".into()),
            offset: 0x1234_5678,
        }],
        stacks: vec![StackRow {
            device: 0,
            address: 0x7000_0000_0000,
            size: 1 << 20,
            frames: vec![0],
        }],
    }
}

/// Every field's path (`a.b[].c`; rows of `allocations`/`largest` by
/// column) and its value in `full()`.
fn fields(v: &Value, at: &str, out: &mut BTreeMap<String, Value>) {
    let key = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let p = key(k);
                if MAPS.contains(&p.as_str()) {
                    assert!(x.as_object().is_some_and(|m| !m.is_empty()), "{p}: fill it");
                    out.insert(p, x.clone());
                } else {
                    fields(x, &p, out);
                }
            }
        }
        Value::Array(a) => {
            let p = format!("{at}[]");
            match a.first() {
                None => panic!("{at} is empty: give it an element in full()"),
                Some(Value::Array(cells)) => {
                    assert_eq!(cells.len(), LIVE_COLUMNS.len(), "{at}: a row");
                    for (c, x) in LIVE_COLUMNS.iter().zip(cells) {
                        out.insert(format!("{p}.{c}"), x.clone());
                    }
                }
                Some(x) => fields(x, &p, out),
            }
        }
        Value::Null => panic!("{at} is null: make it present in full()"),
        _ => {
            out.insert(at.to_string(), v.clone());
        }
    }
}

/// The value at `path` (first elements of arrays) replaced.
fn set(doc: &mut Value, path: &str, to: Value) {
    let mut cur = doc;
    for part in path.split('.') {
        let (name, arr) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (part, false),
        };
        cur = match cur {
            Value::Object(o) => &mut o[name],
            // A row: its cells in LIVE_COLUMNS order.
            Value::Array(cells) => {
                let i = LIVE_COLUMNS.iter().position(|c| *c == name).unwrap();
                &mut cells[i]
            }
            _ => unreachable!("{path}"),
        };
        if arr {
            cur = &mut cur[0];
        }
    }
    *cur = to;
}

/// Values of the field's own type that no real report holds.
fn implausible(v: &Value) -> Vec<Value> {
    match v {
        Value::Number(n) if n.is_u64() => vec![
            Value::from(1u64 << 62),
            Value::from(i32::MAX as u64),
            Value::from(1u64 << 25),
        ],
        Value::Number(n) if n.is_i64() => vec![Value::from(-1)],
        Value::Number(_) => vec![Value::from(-1.0), Value::from(1e300)],
        Value::String(_) => vec![Value::from(""), Value::from("\u{1}not this")],
        _ => vec![],
    }
}

#[test]
fn the_full_report_is_valid() {
    let bytes = serde_json::to_vec(&full()).unwrap();
    if let Err(e) = super::parse(&bytes) {
        panic!("{e}");
    }
}

#[test]
fn every_report_field_is_documented_and_validated() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report-schema.md"),
    )
    .unwrap();
    let json = serde_json::to_value(full()).unwrap();
    let mut all = BTreeMap::new();
    fields(&json, "", &mut all);
    let mut undocumented = Vec::new();
    let mut unchecked = Vec::new();
    let mut stale = Vec::new();
    for (path, value) in &all {
        let leaf = path.rsplit('.').next().unwrap().trim_end_matches("[]");
        let top = path.split(['.', '[']).next().unwrap();
        if !doc.contains(&format!("`{leaf}`")) || !doc.contains(&format!("`{top}")) {
            undocumented.push(path.clone());
        }
        if value.is_boolean() {
            continue; // true and false are both plausible
        }
        let refused = implausible(value).into_iter().any(|bad| {
            let mut d = json.clone();
            set(&mut d, path, bad);
            match super::parse(&serde_json::to_vec(&d).unwrap()) {
                Ok(_) => false,
                Err(e) => {
                    assert!(!e.contains('\n'), "{path}: {e}");
                    // A number out of its type's range is refused by serde
                    // whatever validate does: only its own refusals count.
                    !value.is_number() || e.starts_with("implausible report")
                }
            }
        });
        match (refused, UNCHECKED.iter().any(|(p, _)| p == path)) {
            (false, false) => unchecked.push(path.clone()),
            (true, true) => stale.push(path.clone()),
            _ => {}
        }
    }
    assert!(
        undocumented.is_empty(),
        "not in docs/report-schema.md: {undocumented:?}"
    );
    assert!(
        unchecked.is_empty(),
        "not checked by validate.rs (check them, or list them in UNCHECKED with why): {unchecked:?}"
    );
    assert!(stale.is_empty(), "checked, so not UNCHECKED: {stale:?}");
    for (p, _) in UNCHECKED {
        assert!(all.contains_key(*p), "UNCHECKED names no field: {p}");
    }
}

/// A section cut out of a report that shows activity is refused in one
/// line, never read as "nothing happened" (issue 12).
#[test]
fn sections_cut_out_are_refused() {
    let json = serde_json::to_value(full()).unwrap();
    for (key, needle) in [
        ("devices", "missing field `devices`"),
        ("live", "missing field `live`"),
        ("process", "missing field `process.pid`"),
    ] {
        let mut d = json.clone();
        d.as_object_mut().unwrap().remove(key);
        let e = super::parse(&serde_json::to_vec(&d).unwrap()).unwrap_err();
        assert!(e.contains(needle) && !e.contains('\n'), "{key}: {e}");
    }
}

/// A dump written while a thread's first allocation is in flight has the
/// call counted and nothing else of it yet: a report, not a cut file. An
/// allocation event with no device listed is a cut file.
#[test]
fn a_call_in_flight_is_not_a_cut_file() {
    let mut r = full();
    r.devices.clear();
    r.live = Default::default();
    r.timeline.clear();
    r.failures.clear();
    r.oom = None;
    let mut alloc = r.events[0].clone();
    r.events.clear();
    r.calls = [("cudaMalloc".to_string(), 1)].into_iter().collect();
    let bytes = serde_json::to_vec(&r).unwrap();
    assert!(
        super::parse(&bytes).is_ok(),
        "{:?}",
        super::parse(&bytes).err()
    );
    alloc.op = "alloc".into();
    alloc.code = 0;
    r.events.push(alloc);
    let e = super::parse(&serde_json::to_vec(&r).unwrap()).unwrap_err();
    assert!(e.contains("missing field `devices`"), "{e}");
}
