//! `kvscope demo`: serve_sim under the shim on the stand-in CUDA, with a
//! leak planted, then what the report shows.

use super::{load, locate, run, summary, CliError, Result};
use crate::units::{bytes, count};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

/// The planted fault: this much device memory kept after every request.
const LEAK: &str = "64MiB";

pub fn run(keep: Option<PathBuf>) -> Result<i32> {
    let lib = locate::shim_library()?;
    let native = locate::native_dir()?;
    let (dir, temporary) = match keep {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("kvscope-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::input(format!("cannot create {}: {e}", dir.display())))?;
    let since = SystemTime::now() - std::time::Duration::from_secs(1);
    let args = [
        "--pattern",
        "vllm",
        "--requests",
        "8",
        "--concurrency",
        "4",
        "--leak",
        LEAK,
    ];
    println!(
        "== serve_sim {} (Llama-3.1-8B shape, one 80 GiB simulated GPU), under libkvscope.so",
        args.join(" ")
    );
    let output = Command::new(native.join("serve_sim"))
        .args(args)
        .env("LD_PRELOAD", run::preload_value(&lib))
        .env("KVSCOPE_OUT", &dir)
        .env("KVSCOPE_SAMPLE_MS", "20")
        .output()
        .map_err(|e| CliError::input(format!("cannot run serve_sim: {e}")))?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("   {line}");
    }
    if !output.status.success() {
        return Err(CliError {
            message: format!(
                "serve_sim failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            code: 1,
        });
    }
    let reports = run::reports_since(&dir, since);
    let Some(path) = reports
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
    else {
        return Err(CliError {
            message: format!("no exit report in {}", dir.display()),
            code: 1,
        });
    };
    let r = load::load(path)?;
    println!(
        "\n== the report ({})",
        if temporary {
            "temporary".into()
        } else {
            path.display().to_string()
        }
    );
    print!("{}", summary::render(&r, 6));

    // Allocations made while serving and still live at exit, by size.
    let serve_phase = r
        .markers
        .iter()
        .position(|m| m.label == "serve")
        .map(|i| i as u32 + 1);
    let mut survivors: BTreeMap<u64, u64> = BTreeMap::new();
    for a in &r.live.allocations {
        if serve_phase.is_some_and(|p| a.phase >= p) {
            *survivors.entry(a.size).or_default() += 1;
        }
    }
    println!("\n== what it shows");
    let requests = r
        .markers
        .iter()
        .filter(|m| m.label.ends_with(" done"))
        .count() as u64;
    for (size, n) in &survivors {
        println!(
            "   {} allocations of {} made while serving are still live at exit ({} in all) after {} completed requests{}",
            count(*n),
            bytes(*size),
            bytes(size * n),
            requests,
            if *n == requests { ": one per request, a leak" } else { "" }
        );
    }
    if survivors.is_empty() {
        println!("   nothing made while serving is still live");
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(0)
}
