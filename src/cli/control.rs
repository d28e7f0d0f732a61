//! Talking to a running process that has the shim loaded, without changing
//! its code: a request file in its control directory (`channel`), which the
//! shim's sampler thread picks up within one sample period and removes.

use super::channel;
use super::error::{CliError, Result};
use crate::report::MARKER_LABEL_MAX;
use std::time::{Duration, Instant, SystemTime};

fn send(pid: u32, kind: &str, text: &str) -> Result<i32> {
    let posted = channel::post(pid, kind, text)?;
    // The shim removes the file once it has acted on it.
    let left = channel::wait_taken(&[posted], Instant::now() + Duration::from_secs(10));
    if !left.is_empty() {
        return Err(CliError {
            message: format!(
                "process {pid} did not pick up the request within 10 s (is libkvscope.so loaded, with KVSCOPE_SAMPLE_MS > 0?)"
            ),
            code: 1,
        });
    }
    Ok(0)
}

pub fn mark(pid: u32, label: &str) -> Result<i32> {
    if label.trim().is_empty() {
        return Err(CliError::input("the label is empty"));
    }
    let n = label.chars().count();
    if n > MARKER_LABEL_MAX {
        return Err(CliError::input(format!(
            "the label has {n} characters: a marker keeps at most {MARKER_LABEL_MAX}"
        )));
    }
    send(pid, "mark", label)?;
    println!("marked process {pid}: {label}");
    Ok(0)
}

pub fn dump(pid: u32, reason: Option<&str>) -> Result<i32> {
    let asked = SystemTime::now() - Duration::from_secs(1);
    let dirs = channel::report_dirs(pid);
    send(pid, "dump", reason.unwrap_or("kvscope dump"))?;
    // The shim takes the request, then writes the report: look for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = channel::newest_dump(&dirs, pid, asked) {
            println!("process {pid} wrote {}", p.display());
            return Ok(0);
        }
        if Instant::now() > deadline {
            let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            // On stderr: stdout is the report's path, for scripts.
            return Err(CliError {
                message: format!(
                    "process {pid} took the request, but no report of it appeared in {} (see its stderr)",
                    list.join(" or ")
                ),
                code: 1,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
