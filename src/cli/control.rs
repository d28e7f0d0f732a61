//! Talking to a running process that has the shim loaded, without changing
//! its code: a request file in its control directory, which the shim's
//! sampler thread picks up within one sample period and removes.

use super::error::{CliError, Result};
use crate::report::control;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Whether the process has libkvscope.so mapped: without it nobody would
/// answer, so nothing is asked (and nothing is created).
fn shim_loaded(pid: u32) -> Result<()> {
    let maps = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&maps).map_err(|e| {
        CliError::input(format!(
            "cannot read {maps} to see whether the shim is loaded: {e}"
        ))
    })?;
    let loaded = text.lines().any(|l| {
        l.rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with("libkvscope"))
    });
    if !loaded {
        return Err(CliError::input(format!(
            "process {pid} does not have libkvscope.so loaded (start it with LD_PRELOAD=libkvscope.so, or under kvscope run)"
        )));
    }
    Ok(())
}

fn send(pid: u32, kind: &str, text: &str) -> Result<i32> {
    if !PathBuf::from(format!("/proc/{pid}")).exists() {
        return Err(CliError::input(format!("no process {pid}")));
    }
    shim_loaded(pid)?;
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
            // Only if empty: the shim may be using it.
            let _ = std::fs::remove_dir(&dir);
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
    let asked = SystemTime::now() - Duration::from_secs(1);
    let dirs = report_dirs(pid);
    send(pid, "dump", reason.unwrap_or("kvscope dump"))?;
    // The shim takes the request, then writes the report: look for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = newest_dump(&dirs, pid, asked) {
            println!("process {pid} wrote {}", p.display());
            return Ok(0);
        }
        if Instant::now() > deadline {
            let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            println!(
                "process {pid} took the request, but no report of it appeared in {} (see its stderr)",
                list.join(" or ")
            );
            return Ok(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where the process writes reports, as its shim decided at its start:
/// KVSCOPE_OUT (against its working directory), else ./kvscope-reports,
/// and the fallback $TMPDIR/kvscope-<uid>.
fn report_dirs(pid: u32) -> Vec<PathBuf> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let var = |name: &str| {
        environ
            .split(|&b| b == 0)
            .find_map(|kv| kv.strip_prefix(format!("{name}=").as_bytes()))
            .filter(|v| !v.is_empty())
            .map(|v| PathBuf::from(std::ffi::OsStr::from_bytes(v)))
    };
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    let out = var("KVSCOPE_OUT").unwrap_or_else(|| PathBuf::from("kvscope-reports"));
    let tmp = var("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
    vec![
        cwd.join(out),
        cwd.join(tmp).join(format!("kvscope-{}", control::uid())),
    ]
}

/// The newest dump report of `pid` written since `since` in `dirs`.
fn newest_dump(dirs: &[PathBuf], pid: u32, since: SystemTime) -> Option<PathBuf> {
    let mark = format!("-{pid}-");
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|e| e.flatten())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("kvscope-")
                && n.contains(&mark)
                && n.contains("-dump-")
                && n.ends_with(".json")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(t, _)| *t >= since)
        .max()
        .map(|(_, p)| p)
}
