//! Keeps the state format and the metrics in step with their documentation
//! (docs/state.md, docs/metrics.md): a field or a metric added without its
//! line fails here, and so does a documented one that no longer exists.

use super::expose::{render, Format};
use super::metrics::{collect, Context, Kind, FAMILIES, LABELS};
use super::scan::Scan;
use crate::report::state::*;
use serde_json::Value;
use std::collections::BTreeSet;

fn doc(name: &str) -> String {
    std::fs::read_to_string(format!("{}/docs/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("docs/{name}: {e}"))
}

/// A state with every field set (no null, no empty list).
fn full() -> State {
    let space = SpaceState {
        live_bytes: 1,
        live_count: 1,
        peak_bytes: 1,
        allocs: 1,
        frees: 1,
        failures: 1,
    };
    State {
        schema: STATE_SCHEMA.into(),
        pid: 1,
        hostname: Some("h".into()),
        start_unix_ms: 1,
        written_unix_ms: 2,
        sample_ms: 200,
        run_id: Some("r".into()),
        rank: Some(0),
        local_rank: Some(0),
        world_size: Some(1),
        command: "c".into(),
        model_name: Some("m".into()),
        devices: vec![DeviceState {
            device: 0,
            uuid: Some("GPU-x".into()),
            total_bytes: Some(1),
            used_bytes: Some(1),
            memory: space.clone(),
            managed: space.clone(),
            reserved_bytes: 1,
            pool_reserved_bytes: 1,
            pool_used_bytes: 1,
            vmm_physical_bytes: 1,
            framework_allocated_bytes: Some(1),
            framework_reserved_bytes: Some(1),
            phases: vec![PhaseBytes {
                phase: "p".into(),
                bytes: 1,
                count: 1,
            }],
        }],
        host: space,
        vmm: VmmState {
            reserved_bytes: 1,
            physical_bytes: 1,
            mapped_bytes: 1,
        },
        failures: vec![FailureCount {
            api: "cudaMalloc".into(),
            code: 2,
            code_name: "out_of_memory".into(),
            count: 1,
        }],
        last_marker: Some("m".into()),
        write_errors: 1,
    }
}

fn keys(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                assert!(!x.is_null(), "{k} is null in full()");
                out.insert(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => {
            assert!(!a.is_empty(), "an empty list in full()");
            a.iter().for_each(|x| keys(x, out));
        }
        _ => {}
    }
}

#[test]
fn every_state_field_is_documented() {
    let text = doc("state.md");
    assert!(text.contains(STATE_SCHEMA));
    let mut all = BTreeSet::new();
    keys(&serde_json::to_value(full()).unwrap(), &mut all);
    let missing: Vec<_> = all
        .iter()
        .filter(|k| !text.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "undocumented in docs/state.md: {missing:?}"
    );
}

#[test]
fn metric_names_follow_the_conventions() {
    let mut seen = BTreeSet::new();
    for f in FAMILIES {
        assert!(seen.insert(f.name), "{} twice", f.name);
        assert!(f.name.starts_with("kvscope_"), "{}", f.name);
        assert_eq!(
            f.kind == Kind::Counter,
            f.name.ends_with("_total"),
            "{}",
            f.name
        );
        assert!(!f.help.is_empty());
    }
}

#[test]
fn every_metric_and_label_is_documented_and_nothing_else() {
    let text = doc("metrics.md");
    let documented: BTreeSet<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("kvscope_") && w.len() > "kvscope_".len())
        .map(String::from)
        .collect();
    let names: BTreeSet<String> = FAMILIES.iter().map(|f| f.name.to_string()).collect();
    let undocumented: Vec<_> = names.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&names).collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/metrics.md names what is not served: {unknown:?}"
    );
    for l in LABELS {
        assert!(text.contains(&format!("`{l}`")), "label {l} undocumented");
    }
}

#[test]
fn a_page_uses_only_the_listed_families_and_labels() {
    let scan = Scan {
        live: vec![full()],
        stale: 1,
        skipped: 0,
    };
    let cx = Context {
        hostname: "h",
        hostname_forced: false,
        model_name: None,
        now_unix_ms: 3,
        scan_seconds: 0.001,
    };
    let samples = collect(&scan, &cx);
    let served: BTreeSet<&str> = samples.iter().map(|s| s.family.name).collect();
    let all: BTreeSet<&str> = FAMILIES.iter().map(|f| f.name).collect();
    assert_eq!(served, all, "a full state exercises every family");
    for s in &samples {
        for (k, _) in &s.labels {
            assert!(LABELS.contains(k), "label {k} not in LABELS");
        }
    }
    let page = render(&samples, Format::Prometheus);
    for f in FAMILIES {
        assert!(page.contains(&format!("# HELP {} ", f.name)), "{}", f.name);
    }
}
