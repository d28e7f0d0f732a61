//! Whole processes: a report of a million live allocations written and
//! read, and what preloading costs a process that never touches CUDA.

use crate::common::*;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Runs a command; (seconds, peak RSS in KiB). Reaped with wait4 for its rusage.
#[allow(clippy::zombie_processes)]
pub fn timed(cmd: &mut Command) -> (f64, i64) {
    let t0 = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pid and out-pointers.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    (t0.elapsed().as_secs_f64(), ru.ru_maxrss)
}

/// A report of a million live allocations: written, then read by `report` and `check`.
pub fn report() {
    let dir = std::env::temp_dir().join("kvscope-bench-report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut writes = Vec::new();
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Command::new(native("bench_client"));
        c.args(["live", "1000000", "256"])
            .env("LD_PRELOAD", shim_lib())
            .env("KVSCOPE_OUT", &dir)
            .env("KVSCOPE_LIVE_LIMIT", "2000000")
            .env("KVSCOPE_SAMPLE_MS", "0")
            .env("SIMCUDA_DEVICE_MEM", "3TiB");
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(figure(&text, "dump_rc"), 0.0, "the dump failed");
        writes.push(figure(&text, "dump_seconds"));
    }
    let w = median(writes);
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("-dump-1"))
        .unwrap();
    let mb = file.metadata().map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!("report    writing a report of 1,000,000 live allocations ({mb:.0} MB): {w:.3} s  target <= 1 s  {}", verdict(w <= 1.0, || format!("{:.3} s over", w - 1.0)));
    let pickle = dir.join("memory-viz.pickle");
    let pickle = pickle.to_str().unwrap_or_default();
    let mut seconds = HashMap::new();
    for (name, args) in [
        ("report", vec!["report"]),
        ("check", vec!["check", "--model", "llama-3.1-8b"]),
        ("export", vec!["export", "--memory-viz", pickle]),
    ] {
        let runs: Vec<(f64, i64)> = (0..3)
            .map(|_| timed(Command::new(kvscope_bin()).args(&args).arg(&file)))
            .collect();
        let t = median(runs.iter().map(|r| r.0).collect());
        let rss = runs.iter().map(|r| r.1).max().unwrap_or(0) as f64 / 1024.0;
        seconds.insert(name, t);
        if name == "export" {
            // No target of its own: judged against `kvscope report` below.
            println!("report    kvscope {name} of it: {t:.3} s, peak RSS {rss:.0} MiB");
            continue;
        }
        println!(
            "report    kvscope {name} of it: {t:.3} s, peak RSS {rss:.0} MiB  targets <= 1 s, <= 1024 MiB  {}",
            verdict(t <= 1.0 && rss <= 1024.0, || format!("{t:.3} s, {rss:.0} MiB"))
        );
    }
    // The export reads the same report as `kvscope report` (the baseline of
    // this run), then writes every live allocation as a segment.
    let mb = std::fs::metadata(pickle).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    println!(
        "report    kvscope export --memory-viz of it ({mb:.0} MB pickle): {:.3} s against kvscope report {:.3} s (x{:.2})",
        seconds["export"],
        seconds["report"],
        seconds["export"] / seconds["report"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What preloading costs a process that never touches CUDA.
pub fn startup() {
    let runs = 300;
    let per = |shim: bool| {
        let t0 = Instant::now();
        for _ in 0..runs {
            let mut c = Command::new("/bin/true");
            c.env_remove("LD_PRELOAD");
            if shim {
                c.env("LD_PRELOAD", shim_lib());
            }
            c.status().unwrap();
        }
        t0.elapsed().as_secs_f64() * 1e3 / runs as f64
    };
    let (mut base, mut shim) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        base.push(per(false));
        shim.push(per(true));
    }
    let (b, s) = (median(base), median(shim));
    let added = s - b;
    println!(
        "startup   preloading into /bin/true adds {added:.3} ms per run ({s:.3} ms with, {b:.3} ms without)  target <= 1 ms  {}",
        verdict(added <= 1.0, || format!("{:.3} ms over", added - 1.0))
    );
}
