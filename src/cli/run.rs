//! `kvscope run -- CMD...`: the command with the shim preloaded, then a
//! summary of every report it (and its children) wrote.

use super::error::{CliError, Result};
use super::locate;
use super::preload::{preload_value, reports_since};
use super::site_hook::SiteHook;
use crate::load::load;
use crate::render::summary;
use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

pub fn run(out: Option<PathBuf>, command: &[String]) -> Result<i32> {
    let lib = locate::shim_library()?;
    let out = match out {
        Some(o) => o,
        None => std::env::current_dir()
            .map_err(|e| CliError::input(e.to_string()))?
            .join("kvscope-reports"),
    };
    // 0700, as the shim creates it: reports show command lines and sizes.
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&out)
        .map_err(|e| CliError::input(format!("cannot create {}: {e}", out.display())))?;
    let out = out.canonicalize().unwrap_or(out);
    // A second earlier: file times are coarse on some filesystems.
    let since = SystemTime::now() - std::time::Duration::from_secs(1);
    // Python processes report PyTorch's own counters (removed after the run).
    let hook = SiteHook::install();
    // One run id for the command and every process it starts: its reports,
    // and only its, are this run's (a directory may hold earlier runs').
    let run_id = format!(
        "run-{}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        std::process::id()
    );
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("LD_PRELOAD", preload_value(&lib))
        .env("KVSCOPE_OUT", &out)
        .env("KVSCOPE_RUN_ID", &run_id);
    if let Some(h) = &hook {
        cmd.env("PYTHONPATH", h.pythonpath());
    }
    let status = cmd
        .status()
        .map_err(|e| CliError::input(format!("cannot run {}: {e}", command[0])))?;
    let reports: Vec<_> = reports_since(&out, since)
        .into_iter()
        .map(|p| {
            let r = load(&p);
            (p, r)
        })
        .filter(|(_, r)| {
            r.as_ref()
                .map_or(true, |r| r.process.run_id.as_deref() == Some(&run_id))
        })
        .collect();
    if reports.is_empty() {
        eprintln!(
            "kvscope: no report was written to {} (no CUDA allocation call was seen)",
            out.display()
        );
    }
    for (p, r) in &reports {
        eprintln!("kvscope: {}", p.display());
        match r {
            Ok(r) => eprint!("{}", summary::render(r, 5)),
            Err(e) => eprintln!("kvscope: {e}"),
        }
    }
    Ok(status
        .code()
        .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
}
