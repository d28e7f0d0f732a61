//! `kvscope run -- CMD...`: the command with the shim preloaded, then a
//! summary of every report it (and its children) wrote.

use super::{load, locate, summary, CliError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Reports in `dir` written since `since`, oldest first.
pub fn reports_since(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("kvscope-") && n.ends_with(".json")
        })
        .filter_map(|e| {
            let t = e.metadata().ok()?.modified().ok()?;
            (t >= since).then(|| (t, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// LD_PRELOAD with the shim first, keeping what was there.
pub fn preload_value(lib: &Path) -> String {
    match std::env::var("LD_PRELOAD") {
        Ok(v) if !v.trim().is_empty() => format!("{} {v}", lib.display()),
        _ => lib.display().to_string(),
    }
}

pub fn run(out: Option<PathBuf>, command: &[String]) -> Result<i32> {
    let lib = locate::shim_library()?;
    let out = match out {
        Some(o) => o,
        None => std::env::current_dir()
            .map_err(|e| CliError::input(e.to_string()))?
            .join("kvscope-reports"),
    };
    std::fs::create_dir_all(&out)
        .map_err(|e| CliError::input(format!("cannot create {}: {e}", out.display())))?;
    let out = out.canonicalize().unwrap_or(out);
    // A second earlier: file times are coarse on some filesystems.
    let since = SystemTime::now() - std::time::Duration::from_secs(1);
    let status = Command::new(&command[0])
        .args(&command[1..])
        .env("LD_PRELOAD", preload_value(&lib))
        .env("KVSCOPE_OUT", &out)
        .status()
        .map_err(|e| CliError::input(format!("cannot run {}: {e}", command[0])))?;
    let reports = reports_since(&out, since);
    if reports.is_empty() {
        eprintln!(
            "kvscope: no report was written to {} (no CUDA allocation call was seen)",
            out.display()
        );
    }
    for p in &reports {
        eprintln!("kvscope: {}", p.display());
        match load::load(p) {
            Ok(r) => eprint!("{}", summary::render(&r, 5)),
            Err(e) => eprintln!("kvscope: {}", e.message),
        }
    }
    Ok(status
        .code()
        .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
}
