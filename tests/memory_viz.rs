//! `kvscope export --memory-viz`: PyTorch's memory snapshot, checked by
//! tests/python/memory_viz_check.py against the invariants of the memory_viz
//! page and of torch/cuda/_memory_viz.py, which reads each export too where
//! torch is installed or KVSCOPE_TORCH_MEMORY_VIZ names the file (CI takes it
//! out of the torch wheel). Needs python3; skipped without it unless
//! KVSCOPE_REQUIRE_PYTHON=1 (as in CI).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/h200")
        .join(p)
}

fn export(report: &Path, out: &Path) {
    let o = Command::new(kvscope_bin())
        .args(["export", "--memory-viz"])
        .arg(out)
        .arg(report)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}: {}",
        report.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The checker's verdict on `pickle` (and the torch snapshot to compare with).
fn checked(pickle: &Path, torch: Option<&Path>) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/memory_viz_check.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(pickle);
    if let Some(t) = torch {
        cmd.arg(t);
    }
    let o = cmd.env("PYTHONDONTWRITEBYTECODE", "1").output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{}: {text}{}",
        pickle.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.starts_with("ok "), "{text}");
    // CI gives PyTorch's own _memory_viz.py (.ci/run): it must have read the export.
    if std::env::var_os("KVSCOPE_TORCH_MEMORY_VIZ").is_some() {
        assert!(text.contains("torch yes"), "{text}");
    }
    text
}

#[test]
fn every_segment_of_pytorchs_snapshot_is_exported_with_its_address_and_size() {
    if !python() {
        return;
    }
    let dir = scratch("healthy");
    let out = dir.join("healthy.pickle");
    export(&fixture("healthy/kvscope-exit.json"), &out);
    let verdict = checked(&out, Some(&fixture("healthy/torch-snapshot.pickle.gz")));
    // The check's attribution reaches the viewer's legend, `unknown` included.
    for c in ["weights", "activations", "unknown"] {
        assert!(verdict.contains(&format!("'{c}'")), "{verdict}");
    }
}

#[test]
fn the_real_reports_export_within_the_viewers_invariants() {
    if !python() {
        return;
    }
    let dir = scratch("fixtures");
    for (i, r) in [
        "leak/kvscope-exit.json",
        "fragoom/kvscope-oom.json",
        "allocators/torch-expandable-dump.json",
        "allocators/torch-cudamallocasync-dump.json",
    ]
    .iter()
    .enumerate()
    {
        let report = fixture(r);
        if !report.exists() {
            continue;
        }
        let out = dir.join(format!("{i}.pickle"));
        export(&report, &out);
        checked(&out, None);
    }
}

#[test]
fn the_demos_export_passes_the_invariants() {
    if !python() {
        return;
    }
    let dir = scratch("demo");
    let keep = dir.join("reports");
    let o = Command::new(kvscope_bin())
        .arg("demo")
        .arg("--keep")
        .arg(&keep)
        .output()
        .unwrap();
    common::assert_ok(&o);
    let reports = reports_in(&keep);
    assert!(!reports.is_empty());
    for (i, r) in reports.iter().enumerate() {
        let out = dir.join(format!("demo-{i}.pickle"));
        export(r, &out);
        let verdict = checked(&out, None);
        assert!(verdict.contains("'unknown'"), "{verdict}");
    }
}

#[test]
fn frames_name_the_library_that_allocated() {
    if !python() {
        return;
    }
    let dir = scratch("frames");
    // The 10 MiB allocation keeps its stack (at least 8 MiB): its frames.
    let r = run(
        "who_app",
        &[],
        &[("KVSCOPE_STACK_MIN", "8388608")],
        true,
        &dir,
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let report = r.path("exit");
    let out = dir.join("who.pickle");
    export(report, &out);
    checked(&out, None);
    // Each segment's first frame is its caller's file; a stack gives more.
    let py = "import pickle,sys\nd=pickle.load(open(sys.argv[1],'rb'))\nfor s in d['segments']:\n    print(s['total_size'], s['frames'][0]['filename'].rsplit('/',1)[-1], len(s['frames']) > 1)";
    let o = Command::new("python3")
        .args(["-c", py])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for line in [
        "10485760 libwhoplug.so True",
        "4194304 libwholib.so False",
        "2097152 who_app False",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}

#[test]
fn a_bad_report_is_one_line_and_status_2() {
    let dir = scratch("bad");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, b"{not json").unwrap();
    let o = Command::new(kvscope_bin())
        .args(["export", "--memory-viz"])
        .arg(dir.join("x.pickle"))
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!dir.join("x.pickle").exists());
}

/// The pickle may not be written over the report it is made from (it was,
/// with exit status 0, and the report was gone).
#[test]
fn the_report_being_read_is_never_the_output() {
    let dir = scratch("same");
    let report = dir.join("r.json");
    std::fs::copy(fixture("healthy/kvscope-exit.json"), &report).unwrap();
    let before = std::fs::read(&report).unwrap();
    let o = Command::new(kvscope_bin())
        .args(["export", "--memory-viz"])
        .arg(dir.join(".").join("r.json"))
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the report being read"), "{err}");
    assert_eq!(std::fs::read(&report).unwrap(), before);
}

/// An output that is a directory is refused before any work, in one line
/// that says so (it was written whole beside the directory, as
/// `.NAME.tmp`, then failed to take its place; `/` said "Device or
/// resource busy").
#[test]
fn a_directory_as_the_output_is_refused_before_the_work() {
    let dir = scratch("outdir");
    let out = dir.join("snapshots");
    std::fs::create_dir_all(&out).unwrap();
    for o in [out.clone(), PathBuf::from("/")] {
        let r = Command::new(kvscope_bin())
            .args(["export", "--memory-viz"])
            .arg(&o)
            .arg(fixture("healthy/kvscope-exit.json"))
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(2), "{}", o.display());
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("a directory; give a file name"), "{err}");
    }
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("snapshots")]);
}
