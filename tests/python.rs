//! python/kvscope, the Python helper, against a stand-in `torch` package
//! (tests/python/torch) that loads the allocator as PyTorch does. Needs
//! python3; skipped without it unless KVSCOPE_REQUIRE_PYTHON=1 (as in CI).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn python() -> Option<&'static str> {
    common::python().then_some("python3")
}

/// python3 running `script` (in tests/python) with the helper and the
/// stand-in torch on its path, the stand-in CUDA on its library path and
/// reports in `dir`; no shim preloaded.
fn helper_script(py: &str, script: &str, dir: &Path) -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(py);
    cmd.arg(root.join("tests/python").join(script))
        .env(
            "PYTHONPATH",
            format!(
                "{}:{}",
                root.join("python").display(),
                root.join("tests/python").display()
            ),
        )
        .env("LD_LIBRARY_PATH", native(""))
        .env("KVSCOPE_OUT", dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("LD_PRELOAD");
    cmd
}

/// python3 -c `code` with the helper on its path and reports in `dir`; no
/// shim preloaded.
fn helper_code(py: &str, code: &str, dir: &Path) -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(py);
    cmd.args(["-c", code])
        .env("PYTHONPATH", root.join("python"))
        .env("KVSCOPE_OUT", dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("LD_PRELOAD");
    cmd
}

#[test]
fn install_wires_the_allocator_and_markers_reach_the_report() {
    let Some(py) = python() else {
        eprintln!("python3 not found: skipped");
        return;
    };
    for preload in [false, true] {
        let dir = scratch(&format!("helper-{preload}"));
        let mut cmd = helper_script(py, "helper_check.py", &dir);
        cmd.env("KVSCOPE_LIB", shim_lib());
        if preload {
            cmd.env("LD_PRELOAD", shim_lib());
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "preload {preload}: {stderr}");
        assert!(stderr.is_empty(), "preload {preload}: {stderr}");
        let dump = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dump-1.json"))
            .expect("a dump report");
        let rep = load(&dump);
        assert_eq!(rep["reason_detail"], "from python");
        assert_eq!(u(&device(&rep, 0)["memory"]["live_bytes"]), 3 << 20);
        assert_eq!(u(&rep["calls"]["kvscope_malloc"]), 3);
        assert_eq!(u(&rep["calls"]["kvscope_free"]), 1);
        let markers: Vec<&str> = rep["markers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["label"].as_str().unwrap())
            .collect();
        assert_eq!(markers, ["serving"]);
    }
}

#[test]
fn without_kvscope_in_the_process_the_helper_does_nothing() {
    let Some(py) = python() else {
        eprintln!("python3 not found: skipped");
        return;
    };
    let dir = scratch("absent");
    let out = helper_code(
        py,
        "import kvscope; assert kvscope.mark('x') is False; \
         assert kvscope.dump() is False; assert kvscope.live_bytes() == 0",
        &dir,
    )
    .env("KVSCOPE_LIB", shim_lib())
    .output()
    .unwrap();
    common::assert_ok(&out);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "a report was written"
    );
}

/// `kvscope.mark(b"serve")` and `dump(b"why")` (bytes, as ctypes'
/// kvscope_mark takes them) are the labels `serve` and `why`: they were
/// written as "b'serve'", a marker no rule knows.
#[test]
fn bytes_labels_and_reasons_are_text() {
    let Some(py) = python() else {
        eprintln!("python3 not found: skipped");
        return;
    };
    let dir = scratch("bytes-labels");
    let out = helper_code(
        py,
        "import kvscope; assert kvscope.mark(b'serve'); assert kvscope.dump(b'why')",
        &dir,
    )
    .env("LD_PRELOAD", shim_lib())
    .output()
    .unwrap();
    common::assert_ok(&out);
    let dump = reports_in(&dir)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("-dump-"))
        .expect("a dump report");
    let rep = load(&dump);
    assert_eq!(rep["markers"][0]["label"], "serve", "{}", rep["markers"]);
    assert_eq!(rep["reason_detail"], "why");
}

/// The framework counters of every timeline point of the exit report in
/// `dir`: (marker, allocated, reserved).
fn framework_points(dir: &Path) -> Vec<(Option<String>, u64, u64)> {
    let exit = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
        .expect("an exit report");
    let rep = load(&exit);
    rep["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let f = &s["devices"].as_array()?.first()?["framework"];
            (!f.is_null()).then(|| {
                (
                    s["marker"].as_str().map(String::from),
                    u(&f["allocated_bytes"]),
                    u(&f["reserved_bytes"]),
                )
            })
        })
        .collect()
}

fn run_counters_check(py: &str, dir: &Path, torch: Option<&str>) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = Command::new(kvscope_bin());
    cmd.args(["run", "--out"])
        .arg(dir)
        .args(["--", py])
        .arg(root.join("tests/python/counters_check.py"))
        .env(
            "PYTHONPATH",
            format!(
                "{}:{}",
                root.join("tests/python").display(),
                root.join("tests/python/chained").display()
            ),
        )
        .env("LD_LIBRARY_PATH", native(""))
        .env("KVSCOPE_SAMPLE_MS", "50")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TMPDIR", &tmp)
        .env_remove("LD_PRELOAD")
        .env_remove("KVSCOPE_TORCH");
    if let Some(v) = torch {
        cmd.env("KVSCOPE_TORCH", v);
    }
    cmd.output().unwrap()
}

/// Under `kvscope run`, the site hook samples PyTorch's counters into the
/// timeline, without importing torch or reading anything before CUDA is
/// initialised, chaining the program's own sitecustomize; a forked child has
/// no sampler thread; KVSCOPE_TORCH=0 turns it off.
#[test]
fn kvscope_run_records_pytorch_counters_through_its_site_hook() {
    let Some(py) = python() else {
        eprintln!("python3 not found: skipped");
        return;
    };
    let dir = scratch("site-hook");
    let out = run_counters_check(py, &dir, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("chained=ran"), "{stdout}");
    let want = expectations(&stdout);
    let points = framework_points(&dir);
    let allocated: Vec<u64> = points.iter().map(|p| p.1).collect();
    assert!(allocated.contains(&want["first_allocated"]), "{points:?}");
    assert!(allocated.contains(&want["later_allocated"]), "{points:?}");
    assert!(points.iter().all(|p| p.2 == want["reserved"]), "{points:?}");
    // The site folder (in the run's TMPDIR) is gone after the run.
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);

    let dir = scratch("site-hook-off");
    let out = run_counters_check(py, &dir, Some("0"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("reads=0"), "{stdout}");
    assert!(stdout.contains("chained=ran"), "{stdout}");
    assert_eq!(framework_points(&dir), []);
}

/// kvscope.mark() hands PyTorch's counters to the shim with each marker.
#[test]
fn mark_attaches_pytorch_counters_to_the_marker() {
    let Some(py) = python() else {
        eprintln!("python3 not found: skipped");
        return;
    };
    let dir = scratch("mark-counters");
    let out = helper_script(py, "counters_check.py", &dir)
        .arg("mark")
        .env("LD_PRELOAD", shim_lib())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = expectations(&stdout);
    let marked: Vec<(String, u64)> = framework_points(&dir)
        .into_iter()
        .filter_map(|(m, a, _)| Some((m?, a)))
        .collect();
    assert_eq!(
        marked,
        [
            ("serve".to_string(), want["first_allocated"]),
            ("request 0 done".to_string(), want["later_allocated"])
        ]
    );
    // The summary shows PyTorch's latest view beside the CUDA calls'.
    let exit = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
        .unwrap();
    let out = kvscope(&["report", exit.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "6.00 MiB allocated in tensors, 8.00 MiB reserved (2.00 MiB cached or fragmented)"
        ),
        "{text}"
    );
}

/// examples/gpu_validate.py cannot run its GPU sections here, but its
/// self-test can: its parsing of reports and of `kvscope check`'s JSON, its
/// judgements on the real H200 fixtures, and its children under the shim on
/// the stand-in CUDA. So the GPU script keeps up with the reports it reads.
#[test]
fn the_gpu_validation_script_passes_its_self_test() {
    let Some(py) = python() else {
        eprintln!("python3 not found: skipped");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(py)
        .arg(root.join("examples/gpu_validate.py"))
        .arg("--self-test")
        .env("KVSCOPE_BIN", kvscope_bin())
        .env("KVSCOPE_LIB", shim_lib())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
