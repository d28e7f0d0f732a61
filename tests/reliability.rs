//! Nothing the shim does may hurt the host: concurrency, fork, exit paths,
//! re-entrancy, crash safety, disks, hostile configuration.

mod common;
use common::*;
use std::time::Duration;

const WATCHDOG: Duration = Duration::from_secs(120);

/// Device 0's live bytes and count, allocations and frees are exactly what
/// the client says it did (`expect.device0.*` lines).
fn device0_as_expected(rep: &serde_json::Value, want: &std::collections::BTreeMap<String, u64>) {
    let m = &device(rep, 0)["memory"];
    assert_eq!(u(&m["live_bytes"]), want["device0.live_bytes"]);
    assert_eq!(u(&m["live_count"]), want["device0.live_count"]);
    assert_eq!(u(&m["allocs"]), want["device0.allocs"]);
    assert_eq!(
        u(&m["frees"]),
        want["device0.allocs"] - want["device0.live_count"]
    );
}

#[test]
fn sixty_four_threads_through_every_entry_point_with_dumps_in_between() {
    let dir = scratch("stress");
    let r = run_watched("stress", &["64", "15625"], &[], true, &dir, WATCHDOG);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let want = expectations(&r.stdout());
    assert_eq!(want["pairs"], 1_000_000);
    let rep = r.report("exit");
    device0_as_expected(&rep, &want);
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

/// Every free lands in a shard its thread does not own (the previous
/// thread's), while the owners allocate into theirs and a dumper reads the
/// whole table every 5 ms: the owner-biased lock's two sides at once
/// (track/owned.rs). Counts exact, no free unmatched, every dump whole,
/// the flight recorder in an order that replays.
#[test]
fn threads_freeing_each_others_allocations_while_reports_are_read() {
    let dir = scratch("crossfree");
    let env = [("KVSCOPE_EVENTS", "65536")];
    let r = run_watched("crossfree", &["8", "150", "64"], &env, true, &dir, WATCHDOG);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let want = expectations(&r.stdout());
    let rep = r.report("exit");
    device0_as_expected(&rep, &want);
    // The flight recorder replays: an address freed on one thread and
    // reused on another sorts free first (stamps are coarse: clock.rs). All
    // but a rare race: a free preempted inside `clock::freed` can put back an
    // older stamp (2 events in 13 runs here; 15,299 without `freed`).
    let mut open: std::collections::HashMap<u64, bool> = Default::default();
    let events = rep["events"].as_array().unwrap();
    assert_eq!(events.len(), 65536);
    let mut twice = Vec::new();
    for e in events {
        let alloc = match e["op"].as_str() {
            Some("alloc") => true,
            Some("free") => false,
            _ => continue,
        };
        if open.insert(u(&e["address"]), alloc) == Some(alloc) {
            twice.push(e);
        }
    }
    assert!(
        twice.len() <= 8,
        "allocated or freed twice in a row: {twice:?}"
    );
    for k in ["untracked_frees", "double_frees"] {
        assert_eq!(u(&rep["anomalies"][k]), 0, "{k}");
    }
    // No note either: an address reused while still live (a lost free) would be one.
    assert_eq!(rep["anomalies"]["notes"], serde_json::json!([]));
    let dumps: Vec<_> = r
        .reports
        .iter()
        .filter(|p| p.to_string_lossy().contains("-dump-"))
        .collect();
    assert!(!dumps.is_empty(), "no dump was written during the run");
    // Read by the reader itself, which refuses an implausible report (a
    // dump during a thread's first allocation once listed no device).
    for p in dumps {
        load(p);
        let out = kvscope(&["report", "--json", p.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
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
        // A terminating signal at its default action: the shim's final report.
        let signal_reports = shim
            .reports
            .iter()
            .filter(|p| p.to_string_lossy().ends_with("-signal.json"))
            .count();
        assert_eq!(signal_reports, usize::from(how == "sigterm"), "{how}");
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

#[test]
fn a_process_killed_while_writing_never_leaves_a_torn_report() {
    use std::process::Stdio;
    use std::time::Instant;
    // Live allocations enough for a dump that takes tens of ms to write
    // (fewer with the unoptimised shim of a debug build).
    let live = if cfg!(debug_assertions) {
        "40000"
    } else {
        "200000"
    };
    let args = ["live", live, "4096"];
    let env = [("SIMCUDA_DEVICE_MEM", "1TiB")];
    let dir = scratch("kill-baseline");
    let t = Instant::now();
    let r = run("bench_client", &args, &env, true, &dir);
    let full = t.elapsed();
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.reports.len() >= 2, "{:?}", r.reports);
    // Kill points spread over the whole run, the write included; a fixed
    // seed per trial so a failure can be replayed.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let dir = scratch("kill");
    let (mut parsed, mut trials, mut mid_write) = (0, 0, 0);
    for trial in 0..100 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = full.mul_f64((seed % 1000) as f64 / 1000.0 * 1.1);
        let mut child = client_command("bench_client", &args, &env, true, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        let _ = child.kill();
        let _ = child.wait();
        trials += 1;
        for p in reports_in(&dir) {
            let text = std::fs::read(&p).unwrap();
            let parsed_ok = serde_json::from_slice::<serde_json::Value>(&text)
                .is_ok_and(|v| v["schema"] == "kvscope.report.v1");
            assert!(
                parsed_ok,
                "trial {trial} (kill at {at:?}): {} is torn",
                p.display()
            );
            parsed += 1;
            std::fs::remove_file(&p).unwrap();
        }
        // A temporary file left behind: this kill landed in the middle of a write.
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                mid_write += 1;
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    assert_eq!(trials, 100);
    // Some kills must have landed after a report was complete, or the test proved nothing.
    assert!(parsed > 0, "no kill landed after a report was written");
    assert!(mid_write > 0, "no kill landed during a write");
    eprintln!(
        "100 kills over {full:?}: {mid_write} during a write, {parsed} whole reports, none torn"
    );
}

#[test]
fn a_file_size_limit_costs_one_warning_and_nothing_else() {
    use std::os::unix::process::CommandExt;
    let dir = scratch("fsize");
    let plain = run("scripted", &[], &[("SIMCUDA_DEVICES", "2")], false, &dir);
    let mut cmd = client_command("scripted", &[], &[("SIMCUDA_DEVICES", "2")], true, &dir);
    // SAFETY: setrlimit is async-signal-safe; runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1000,
                rlim_max: 1000,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    // Without the guard, SIGXFSZ would end the program at the first report write.
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, plain.out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("kvscope: warning: could not write report"),
        "{stderr}"
    );
    assert!(stderr.contains("File too large"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn garbage_settings_cost_a_warning_each_and_defaults_are_used() {
    let garbage = [
        ("KVSCOPE_DISABLE", "perhaps"),
        ("KVSCOPE_SAMPLE_MS", "abc"),
        ("KVSCOPE_IDLE_MS", "-5"),
        ("KVSCOPE_EVENTS", "99999999999999999999999"),
        ("KVSCOPE_LIVE_LIMIT", "1e9"),
        ("KVSCOPE_TIMELINE_POINTS", "\u{1F642}"),
        ("KVSCOPE_CHECKPOINT_S", "NaN"),
        ("KVSCOPE_DEVICE_QUERY", "maybe"),
        ("KVSCOPE_LOG", "sometimes"),
    ];
    let mut env = vec![("SIMCUDA_DEVICES", "2")];
    let plain = run("scripted", &[], &env, false, &scratch("garbage-plain"));
    env.extend_from_slice(&garbage);
    let dir = scratch("garbage");
    let r = run_watched("scripted", &[], &env, true, &dir, WATCHDOG);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), plain.stdout());
    let stderr = r.stderr();
    assert_eq!(stderr.lines().count(), garbage.len(), "{stderr}");
    for (name, _) in garbage {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("kvscope: warning: {name}="))),
            "{name}: {stderr}"
        );
    }
    let rep = r.report("exit");
    assert_eq!(u(&rep["shim"]["sample_ms"]), 200);
    assert_eq!(u(&rep["shim"]["event_capacity"]), 512);
    assert_eq!(u(&rep["shim"]["live_limit"]), 100_000);
    // Extreme but valid values are clamped, not obeyed into harm.
    let dir = scratch("extreme");
    let extreme = [
        ("SIMCUDA_DEVICES", "2"),
        ("KVSCOPE_EVENTS", "0"),
        ("KVSCOPE_SAMPLE_MS", "18446744073709551615"),
        ("KVSCOPE_TIMELINE_POINTS", "18446744073709551615"),
        ("KVSCOPE_LIVE_LIMIT", "0"),
    ];
    let r = run_watched("scripted", &[], &extreme, true, &dir, WATCHDOG);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stderr(), "");
    let rep = r.report("exit");
    assert_eq!(u(&rep["shim"]["event_capacity"]), 1);
    assert!(rep["live"]["truncated"].as_bool().unwrap());
}

/// A process that exits right after its first out-of-memory failure still
/// leaves the post-mortem: the exit path waits for the background thread
/// writing it (or writes it itself), 50 times in a row.
#[test]
fn an_oom_right_before_exit_is_never_lost() {
    for i in 0..50 {
        let dir = scratch("oom-then-exit");
        let r = run_watched("errors", &["oom"], &[], true, &dir, WATCHDOG);
        let ooms = r
            .reports
            .iter()
            .filter(|p| p.to_string_lossy().ends_with("-oom.json"))
            .count();
        assert_eq!(ooms, 1, "run {i}: {:?}", r.reports);
    }
}
