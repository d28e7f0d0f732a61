//! The control channel seen from the reader: whether a process has the shim
//! loaded, request files left in its control directory (which its sampler
//! thread picks up within one sample period and removes: the removal is the
//! acknowledgement), and where its reports land. Shared by `kvscope
//! mark/dump PID` and `kvscope diagnose`.

use super::error::{CliError, Result};
use crate::report::control;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Whether `/proc/PID/maps` lists libkvscope.so (None: not readable).
pub fn has_shim(pid: u32) -> Option<bool> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    Some(maps_name_shim(&text))
}

/// Whether a `/proc/PID/maps` text maps libkvscope.
fn maps_name_shim(maps: &str) -> bool {
    maps.lines().any(|l| {
        l.rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with("libkvscope"))
    })
}

/// Whether the shim's background thread runs in `pid` (its name in
/// `/proc/PID/task/*/comm`): only then are requests picked up. The shim
/// starts at a process's first CUDA call, so a process that never made one
/// (a server's HTTP front end) has the library loaded but nobody answering.
pub fn sampler_running(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
        tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "kvscope-sampler")
        })
    })
}

/// Whether the process has libkvscope.so mapped: without it nobody would
/// answer, so nothing is asked (and nothing is created).
pub fn shim_loaded(pid: u32) -> Result<()> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| {
        CliError::input(format!(
            "cannot read /proc/{pid}/maps to see whether the shim is loaded: {e}"
        ))
    })?;
    if maps_name_shim(&maps) {
        Ok(())
    } else {
        Err(CliError::input(format!(
            "process {pid} does not have libkvscope.so loaded (start it with LD_PRELOAD=libkvscope.so, or under kvscope run)"
        )))
    }
}

/// Whether `pid` has ended but not been reaped (a zombie): its
/// `/proc/PID` is still there, with nothing mapped, so it would read as a
/// process without the shim.
pub fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        // The state follows the command name, which may hold spaces and ')'.
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

/// Leaves a request (`kind`: `mark` or `dump`) for `pid` and returns its
/// path; it is taken once the file is gone.
pub fn post(pid: u32, kind: &str, text: &str) -> Result<PathBuf> {
    if !PathBuf::from(format!("/proc/{pid}")).exists() {
        return Err(CliError::input(format!("no process {pid}")));
    }
    if exited(pid) {
        return Err(CliError::input(format!(
            "process {pid} has exited (its parent has not reaped it yet)"
        )));
    }
    shim_loaded(pid)?;
    // Loaded is not enough: nobody would take the request (it would wait
    // its whole time for nothing).
    if !sampler_running(pid) {
        return Err(CliError::input(format!(
            "the shim is loaded in process {pid} but not running there (no CUDA call yet, or KVSCOPE_SAMPLE_MS=0): nothing would take the request"
        )));
    }
    let base = ctl_base(pid);
    let dir = control::dir_for(&base, pid);
    super::private::create_dir(&dir)?;
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
    let stamp = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Requests are applied in name order: a counter keeps two posted in the
    // same nanosecond in the order they were posted.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{stamp:020}-{seq:06}-{}.{kind}", std::process::id());
    // Hidden and without a request's extension until whole (older shims
    // took any `*.mark` file, even one being written).
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(&name);
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &dst))
        .map_err(|e| CliError::input(format!("cannot write {}: {e}", dst.display())))?;
    Ok(dst)
}

/// Waits until every posted request is taken, up to `deadline`; the ones
/// still there are withdrawn and returned.
pub fn wait_taken(posted: &[PathBuf], deadline: Instant) -> Vec<PathBuf> {
    loop {
        let left: Vec<PathBuf> = posted.iter().filter(|p| p.exists()).cloned().collect();
        if left.is_empty() {
            return left;
        }
        if Instant::now() > deadline {
            for p in &left {
                let _ = std::fs::remove_file(p);
                // Only if empty: the shim may be using it.
                if let Some(d) = p.parent() {
                    let _ = std::fs::remove_dir(d);
                }
            }
            return left;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A variable of `pid`'s environment (as it started), when set and not empty.
fn env_of(pid: u32, name: &str) -> Option<PathBuf> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(format!("{name}=").as_bytes()))
        .filter(|v| !v.is_empty())
        .map(|v| PathBuf::from(std::ffi::OsStr::from_bytes(v)))
}

/// The control directory to leave `pid`'s requests in: KVSCOPE_CTL_DIR as
/// given to this command (the process's directory seen from here, e.g. a
/// container's volume), else the process's own KVSCOPE_CTL_DIR (against
/// its working directory), else the default. Without the second, a server
/// started with its own directory never saw a request (a 10 s wait).
fn ctl_base(pid: u32) -> PathBuf {
    let configured = std::env::var_os(control::CTL_DIR_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            env_of(pid, control::CTL_DIR_VAR).map(|d| cwd.join(d))
        });
    control::base_dir(configured.as_deref())
}

/// Where the process writes reports, as its shim decided at its start:
/// KVSCOPE_OUT (against its working directory), else ./kvscope-reports,
/// and the fallback $TMPDIR/kvscope-<uid>.
pub fn report_dirs(pid: u32) -> Vec<PathBuf> {
    let var = |name: &str| env_of(pid, name);
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
    let out = var("KVSCOPE_OUT").unwrap_or_else(|| PathBuf::from("kvscope-reports"));
    let tmp = var("TMPDIR").unwrap_or_else(|| PathBuf::from("/tmp"));
    vec![
        cwd.join(out),
        cwd.join(tmp).join(format!("kvscope-{}", control::uid())),
    ]
}

/// Reports of `pid` in `dirs` written since `since` whose name says `kind`
/// (`-dump-`, `-oom`, ...; empty: any), oldest first.
pub fn reports_since(dirs: &[PathBuf], pid: u32, since: SystemTime, kind: &str) -> Vec<PathBuf> {
    let mark = format!("-{pid}-");
    let mut found: Vec<(SystemTime, PathBuf)> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|e| e.flatten())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("kvscope-")
                && n.contains(&mark)
                && n.contains(kind)
                && n.ends_with(".json")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(t, _)| *t >= since)
        .collect();
    found.sort();
    found.dedup_by(|a, b| a.1 == b.1);
    found.into_iter().map(|(_, p)| p).collect()
}

/// The newest dump report of `pid` written since `since` in `dirs`.
pub fn newest_dump(dirs: &[PathBuf], pid: u32, since: SystemTime) -> Option<PathBuf> {
    reports_since(dirs, pid, since, "-dump-").pop()
}
