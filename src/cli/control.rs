//! Talking to a running process that has the shim loaded, without changing
//! its code: a request file in its control directory, which the shim's
//! sampler thread picks up within one sample period and removes.

use super::error::{CliError, Result};
use crate::report::control;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn send(pid: u32, kind: &str, text: &str) -> Result<i32> {
    if !PathBuf::from(format!("/proc/{pid}")).exists() {
        return Err(CliError::input(format!("no process {pid}")));
    }
    let base = control::base_dir(
        std::env::var_os(control::CTL_DIR_VAR)
            .map(PathBuf::from)
            .as_deref(),
    );
    let dir = control::dir_for(&base, pid);
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| CliError::input(format!("cannot create {}: {e}", dir.display())))?;
    // The shim ignores a channel someone else could write to; say so here.
    for d in [base, dir.clone()] {
        let meta = std::fs::symlink_metadata(&d)
            .map_err(|e| CliError::input(format!("{}: {e}", d.display())))?;
        if !meta.is_dir() || !control::trusted(&meta) {
            return Err(CliError::input(format!(
                "{} is not a directory of yours closed to others: remove it, or set KVSCOPE_CTL_DIR",
                d.display()
            )));
        }
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{stamp}-{}.{kind}", std::process::id());
    let tmp = dir.join(format!(".{name}"));
    let dst = dir.join(&name);
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &dst))
        .map_err(|e| CliError::input(format!("cannot write {}: {e}", dst.display())))?;
    // The shim removes the file once it has acted on it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while dst.exists() {
        if Instant::now() > deadline {
            let _ = std::fs::remove_file(&dst);
            return Err(CliError {
                message: format!(
                    "process {pid} did not pick up the request within 10 s (is libkvscope.so loaded, with KVSCOPE_SAMPLE_MS > 0?)"
                ),
                code: 1,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(0)
}

pub fn mark(pid: u32, label: &str) -> Result<i32> {
    if label.trim().is_empty() {
        return Err(CliError::input("the label is empty"));
    }
    send(pid, "mark", label)?;
    println!("marked process {pid}: {label}");
    Ok(0)
}

pub fn dump(pid: u32, reason: Option<&str>) -> Result<i32> {
    send(pid, "dump", reason.unwrap_or("kvscope dump"))?;
    println!("process {pid} wrote a report (see its KVSCOPE_OUT directory)");
    Ok(0)
}
