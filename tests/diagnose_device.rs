//! `kvscope diagnose` at device level: the stand-in OpenAI server
//! (tests/support/openai_stub.py) run WITHOUT the shim, its memory counted
//! by the stand-in driver and read through the stand-in NVML
//! (`SIMCUDA_NVML_DIR`, `libnvidia-ml.so.1` from the native dir), as a real
//! server started without kvscope is read through the real NVML. The four
//! steps are measured at device level; a healthy server passes; a leak per
//! request is still found, as device growth; no NVML is refused in one line.
//! Needs python3 (skipped without it unless KVSCOPE_REQUIRE_PYTHON=1).

mod common;
#[path = "support/diagnose_kit.rs"]
mod kit;
use common::native;
use common::python;
use kit::*;
use serde_json::Value;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// kvscope's side: the stand-in NVML library and the usage files it reads.
fn nvml_env(dir: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_LIBRARY_PATH".into(), native("").display().to_string()),
        (
            "SIMCUDA_NVML_DIR".into(),
            dir.join("nvml").display().to_string(),
        ),
    ]
}

fn start_unshimmed(dir: &Path, args: &[&str]) -> Stub {
    let nvml = dir.join("nvml");
    std::fs::create_dir_all(&nvml).unwrap();
    start(
        dir,
        false,
        args,
        &[("SIMCUDA_NVML_DIR", nvml.to_str().unwrap())],
    )
}

fn run(stub: &Stub, extra: &[&str], env: &[(String, String)]) -> Diag {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    diagnose_env(stub, extra, &env)
}

fn device_level(v: &Value, pid: u32) {
    let d = &v["diagnose"];
    assert_eq!(d["level"], "device", "{d}");
    let scope = d["level_note"].as_str().unwrap();
    assert!(
        scope.contains("no breakdown") && scope.contains("allocator's cache count as use"),
        "{scope}"
    );
    assert_eq!(d["reports"][0], format!("nvml pid {pid}"));
    assert!(d["probe"].as_str().unwrap().contains("NVML"), "{d}");
    // Steps 2-4 were sampled while their requests were in flight.
    let windows = d["steps"].as_array().unwrap();
    assert_eq!(windows.len(), 4);
    let base = v["processes"][0]["devices"][0]["breakdown"]["tracked_bytes"]
        .as_u64()
        .unwrap();
    assert!(base > 100 * MIB, "weights and context are held: {base}");
    for w in &windows[1..] {
        let peak = w["sampled_peak_bytes"].as_u64().unwrap_or(0);
        assert!(peak > 100 * MIB, "{w}");
    }
}

#[test]
fn a_healthy_server_without_the_shim_passes_the_four_steps_at_device_level() {
    if !python() {
        return;
    }
    let dir = setup("device-healthy");
    let stub = start_unshimmed(&dir, &["--pattern", "paged"]);
    let env = nvml_env(&dir);
    let d = run(&stub, &["--json"], &env);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    let v = d.json();
    assert_eq!(v["critical"], 0, "{:?}", names(&v));
    device_level(&v, stub.child.id());
    let st = steps(&v);
    assert_eq!(st.len(), 4);
    for (status, detail) in &st {
        assert_eq!(status, "ok", "{st:?}");
        assert!(
            !detail.contains("segment-level") && !detail.contains("does not look like"),
            "{detail}"
        );
    }
    assert!(
        st[0].1.contains("not told apart at device level"),
        "{}",
        st[0].1
    );
    assert!(st[1].1.contains("device-level (NVML)"), "{}", st[1].1);
    // Findings that need allocations are never guessed at device level.
    for f in names(&v) {
        assert!(
            !f.contains("kv_cache") && !f.contains("baseline_too_high"),
            "{f}"
        );
    }
    // The text says it too.
    let d = run(&stub, &[], &env);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert!(
        d.stdout
            .contains("verdicts at device level (NVML, no shim)"),
        "{}",
        d.stdout
    );
    assert!(d.stdout.contains("held (NVML)"), "{}", d.stdout);
    assert!(
        d.stdout
            .contains("held by the process (NVML, device level)")
            && !d.stdout.contains("tracked live"),
        "{}",
        d.stdout
    );
}

#[test]
fn a_leak_per_request_is_still_found_as_device_growth() {
    if !python() {
        return;
    }
    let dir = setup("device-leak");
    let stub = start_unshimmed(&dir, &["--pattern", "paged", "--leak", "8388608"]);
    let d = run(&stub, &["--json"], &nvml_env(&dir));
    let v = d.json();
    assert_eq!(d.code, 1, "{:?}\n{}", names(&v), d.stderr);
    device_level(&v, stub.child.id());
    assert!(
        names(&v).contains(&"critical leak_per_request".to_string()),
        "{:?}",
        names(&v)
    );
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "leak_per_request")
        .unwrap();
    assert_eq!(
        f["numbers"]["bytes_per_request"].as_u64(),
        Some(8 << 20),
        "{f}"
    );
    assert_eq!(f["numbers"]["view"], "device_level", "{f}");
    assert_eq!(steps(&v)[1].0, "problem");
    // An engine log is not compared at device level (nothing to compare it
    // with), and says so.
    let log = dir.join("tgi.log");
    std::fs::write(&log, "Setting max batch total tokens to 4096\n").unwrap();
    let d = run(
        &stub,
        &["--json", "--engine-log", log.to_str().unwrap()],
        &nvml_env(&dir),
    );
    let v = d.json();
    assert!(
        v["engine_plan"].as_array().is_none_or(|t| t.is_empty()),
        "{}",
        v["engine_plan"]
    );
    let notes = v["diagnose"]["notes"].to_string();
    assert!(notes.contains("not compared at device level"), "{notes}");
}

#[test]
fn without_nvml_a_server_without_the_shim_is_refused_in_one_line() {
    if !python() {
        return;
    }
    let dir = setup("device-absent");
    let stub = start_unshimmed(&dir, &["--pattern", "paged"]);
    let mut env = nvml_env(&dir);
    env.push(("SIMNVML_DRIVER".into(), "absent".into()));
    let d = run(&stub, &[], &env);
    assert_eq!(d.code, 2, "{}", d.stderr);
    assert_eq!(d.stderr.trim().lines().count(), 1, "{}", d.stderr);
    assert!(
        d.stderr.contains("has the shim loaded")
            && d.stderr.contains("no NVML")
            && d.stderr.contains("kvscope run --"),
        "{}",
        d.stderr
    );
    assert!(d.stdout.is_empty());
    // NVML there, but it lists no process of the server (another usage dir).
    let other = dir.join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let mut env = nvml_env(&dir);
    env[1].1 = other.display().to_string();
    let d = run(&stub, &[], &env);
    assert_eq!(d.code, 2, "{}", d.stderr);
    assert_eq!(d.stderr.trim().lines().count(), 1, "{}", d.stderr);
    assert!(d.stderr.contains("NVML lists none of them"), "{}", d.stderr);
}
