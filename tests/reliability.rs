//! Nothing the shim does may hurt the host: concurrency, fork, exit paths,
//! re-entrancy, crash safety, disks, hostile configuration.

mod common;
use common::*;
use std::time::Duration;

const WATCHDOG: Duration = Duration::from_secs(120);

#[test]
fn sixty_four_threads_through_every_entry_point_with_dumps_in_between() {
    let dir = scratch("stress");
    let r = run_watched("stress", &["64", "15625"], &[], true, &dir, WATCHDOG);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let want = expectations(&r.stdout());
    assert_eq!(want["pairs"], 1_000_000);
    let rep = r.report("exit");
    let m = &device(&rep, 0)["memory"];
    assert_eq!(u(&m["live_bytes"]), want["device0.live_bytes"]);
    assert_eq!(u(&m["live_count"]), want["device0.live_count"]);
    assert_eq!(u(&m["allocs"]), want["device0.allocs"]);
    assert_eq!(
        u(&m["frees"]),
        want["device0.allocs"] - want["device0.live_count"]
    );
    assert_eq!(u(&rep["host"]["live_bytes"]), want["host.live_bytes"]);
    assert_eq!(u(&rep["host"]["allocs"]), want["host.allocs"]);
    let managed = &device(&rep, 0)["managed"];
    assert_eq!(u(&managed["allocs"]), want["managed.allocs"]);
    assert_eq!(u(&managed["live_bytes"]), 0);
    assert_eq!(u(&rep["vmm"]["physical_bytes"]), 0);
    for k in ["untracked_frees", "double_frees", "size_mismatched_frees"] {
        assert_eq!(u(&rep["anomalies"][k]), 0, "{k}");
    }
    // Every report written while the threads ran is whole.
    let dumps = r
        .reports
        .iter()
        .filter(|p| p.to_string_lossy().contains("-dump-"))
        .count();
    assert!(dumps >= 1, "no dump was written during the run");
    for p in &r.reports {
        load(p);
    }
}

#[test]
fn forks_under_load_neither_deadlock_nor_report_twice() {
    let dir = scratch("fork-busy");
    let r = run_watched("probe", &["fork-busy", "40"], &[], true, &dir, WATCHDOG);
    assert_eq!(r.code(), 0, "{}{}", r.stdout(), r.stderr());
    assert!(
        r.stdout().contains("forks=40 execs=20 failed=0"),
        "{}",
        r.stdout()
    );
    let mut exit_pids = Vec::new();
    for p in &r.reports {
        let rep = load(p);
        // A forked child is a pass-through: nothing it did reaches any report.
        let labels = rep["markers"].as_array().unwrap();
        assert!(
            labels.iter().all(|m| m["label"] != "in the child"),
            "{}",
            p.display()
        );
        if p.to_string_lossy().ends_with("-exit.json") {
            exit_pids.push(u(&rep["process"]["pid"]));
        }
    }
    // The parent's own exit report, and one per child that exec'd.
    exit_pids.sort();
    exit_pids.dedup();
    assert_eq!(exit_pids.len(), 21, "{:?}", r.reports);
}

/// How a process ended: its exit code or the signal that ended it.
fn ending(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => "unknown".into(),
    }
}

#[test]
fn every_exit_path_keeps_its_status_and_reports_where_documented() {
    if !native("exits").exists() {
        assert!(
            std::env::var("KVSCOPE_REQUIRE_CXX").is_err(),
            "the exits client needs a C++ compiler (KVSCOPE_REQUIRE_CXX=1)"
        );
        eprintln!("no C++ compiler: skipped");
        return;
    }
    // (how, its ending, whether an exit report is written: README "Where reports go").
    let cases = [
        ("exit", "exit 7", true),
        ("return", "exit 3", true),
        ("thread-exit", "exit 9", true),
        ("_exit", "exit 5", false),
        ("abort", "signal 6", false),
        ("sigterm", "signal 15", false),
        ("throw", "signal 6", false),
    ];
    for (how, end, reported) in cases {
        let plain = run(
            "exits",
            &[how],
            &[],
            false,
            &scratch(&format!("exits-{how}-plain")),
        );
        let dir = scratch(&format!("exits-{how}"));
        let shim = run_watched("exits", &[how], &[], true, &dir, WATCHDOG);
        assert_eq!(ending(&plain.out.status), end, "{how} without the shim");
        assert_eq!(ending(&shim.out.status), end, "{how} under the shim");
        assert_eq!(shim.stdout(), plain.stdout(), "{how}: stdout");
        assert_eq!(shim.stderr(), plain.stderr(), "{how}: stderr");
        let exits = shim
            .reports
            .iter()
            .filter(|p| p.to_string_lossy().ends_with("-exit.json"));
        assert_eq!(
            exits.count(),
            usize::from(reported),
            "{how}: {:?}",
            shim.reports
        );
        if reported {
            let rep = shim.report("exit");
            assert_eq!(
                u(&device(&rep, 0)["memory"]["live_bytes"]),
                32 << 20,
                "{how}"
            );
        }
    }
}

#[test]
fn cuda_reached_late_through_dlopen_plugins_and_dlsym_itself() {
    // `dlsym-dlsym` starts the shim from inside a dlsym call (the program's
    // first hooked call is dlsym asking for dlsym); `plugin` reaches CUDA from
    // a library the program dlopened; `none` never touches CUDA.
    for mode in ["none", "direct", "plugin", "dlsym-dlsym"] {
        let plain = run(
            "late",
            &[mode],
            &[],
            false,
            &scratch(&format!("late-{mode}-plain")),
        );
        let dir = scratch(&format!("late-{mode}"));
        let shim = run_watched("late", &[mode], &[], true, &dir, WATCHDOG);
        assert_eq!(plain.code(), 0, "{mode}: {}", plain.stderr());
        assert_eq!(shim.code(), 0, "{mode}: {}", shim.stderr());
        assert_eq!(shim.stdout(), plain.stdout(), "{mode}");
        assert_eq!(shim.stderr(), "", "{mode}");
        if mode == "none" {
            assert!(shim.reports.is_empty(), "{:?}", shim.reports);
            continue;
        }
        let want = expectations(&shim.stdout());
        let rep = shim.report("exit");
        let m = &device(&rep, 0)["memory"];
        assert_eq!(u(&m["live_bytes"]), want["device0.live_bytes"], "{mode}");
        assert_eq!(u(&m["live_count"]), want["device0.live_count"], "{mode}");
        assert_eq!(u(&rep["calls"]["cudaMalloc"]), 4, "{mode}");
        // The runtime's own driver calls were routed (not counted again).
        assert_eq!(
            rep["calls"].get("cuMemAlloc_v2"),
            None,
            "{mode}: {}",
            rep["calls"]
        );
    }
}
