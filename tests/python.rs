//! python/kvscope, the Python helper, against a stand-in `torch` package
//! (tests/python/torch) that loads the allocator as PyTorch does. Needs
//! python3; skipped without it unless KVSCOPE_REQUIRE_PYTHON=1 (as in CI).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn python() -> Option<&'static str> {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var("KVSCOPE_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
        panic!("python3 is required (KVSCOPE_REQUIRE_PYTHON=1)");
    }
    found.then_some("python3")
}

#[test]
fn install_wires_the_allocator_and_markers_reach_the_report() {
    let Some(py) = python() else {
        eprintln!("python3 not found: skipped");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for preload in [false, true] {
        let dir = scratch(&format!("helper-{preload}"));
        let mut cmd = Command::new(py);
        cmd.arg(root.join("tests/python/helper_check.py"))
            .env(
                "PYTHONPATH",
                format!(
                    "{}:{}",
                    root.join("python").display(),
                    root.join("tests/python").display()
                ),
            )
            .env("KVSCOPE_LIB", shim_lib())
            .env("LD_LIBRARY_PATH", native(""))
            .env("KVSCOPE_OUT", &dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("LD_PRELOAD");
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = scratch("absent");
    let out = Command::new(py)
        .args([
            "-c",
            "import kvscope; assert kvscope.mark('x') is False; \
             assert kvscope.dump() is False; assert kvscope.live_bytes() == 0",
        ])
        .env("PYTHONPATH", root.join("python"))
        .env("KVSCOPE_LIB", shim_lib())
        .env("KVSCOPE_OUT", &dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "a report was written"
    );
}
