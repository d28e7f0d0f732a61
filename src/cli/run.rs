//! `kvscope run -- CMD...`: the command with the shim preloaded, then a
//! summary of every report it (and its children) wrote.

use super::error::{CliError, Result};
use super::locate;
use super::preload::{env_flag, preload_value, reports_since};
use super::site_hook::SiteHook;
use crate::load::load;
use crate::render::summary;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::SystemTime;

/// The command's pid while it runs, for the forwarding handler.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A stop that came before the command's pid was known: sent once it is.
static PENDING: AtomicI32 = AtomicI32::new(0);

/// SIGTERM and SIGHUP sent to `kvscope run` (`kill`, `docker stop`) go on to
/// the command, which stops as it would alone; then its reports are summed up.
extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Acquire);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.store(sig, Ordering::Release);
    }
}

/// SIGTERM and SIGHUP forwarded from before the command starts: a stop sent
/// as soon as the command shows life (it may print before `spawn` returns
/// here) must not kill `kvscope run` alone and leave the command orphaned.
/// The handlers do not pass to the command (exec resets them).
fn forward_stop_signals() {
    // SAFETY: plain handler installation before any thread of ours starts.
    unsafe {
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, forward as *const () as libc::sighandler_t);
    }
}

/// The command's pid is known: a stop that came meanwhile goes to it now.
/// SIGINT is ignored from here on (not before the spawn: an ignored signal
/// would stay ignored in the command), because a terminal's Ctrl-C reaches
/// the command itself (it is in the same process group) and the summary
/// should follow.
fn command_started(pid: i32) {
    CHILD.store(pid, Ordering::Release);
    let sig = PENDING.swap(0, Ordering::AcqRel);
    // SAFETY: kill and signal have no memory-safety preconditions.
    unsafe {
        if sig != 0 {
            libc::kill(pid, sig);
        }
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

pub fn run(out: Option<PathBuf>, command: &[String]) -> Result<i32> {
    let lib = locate::shim_library()?;
    // --out, else KVSCOPE_OUT as the shim would read it, else ./kvscope-reports.
    let out = match out.or_else(|| std::env::var_os("KVSCOPE_OUT").map(PathBuf::from)) {
        Some(o) => o,
        None => std::env::current_dir()
            .map_err(|e| CliError::input(e.to_string()))?
            .join("kvscope-reports"),
    };
    // 0700, as the shim creates it: reports show command lines and sizes.
    super::private::create_dir(&out)?;
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
    forward_stop_signals();
    // As a shell says it: 127 for a command not found, 126 for one that
    // cannot be run.
    let mut child = cmd.spawn().map_err(|e| CliError {
        message: format!("cannot run {}: {e}", command[0]),
        code: if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    })?;
    command_started(child.id() as i32);
    let status = child
        .wait()
        .map_err(|e| CliError::input(format!("waiting for {}: {e}", command[0])))?;
    CHILD.store(0, Ordering::Release);
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
        let why = if env_flag("KVSCOPE_DISABLE") == Some(true) {
            "KVSCOPE_DISABLE is set: the shim passed every call through and recorded nothing"
        } else {
            "no CUDA allocation call was seen"
        };
        eprintln!(
            "kvscope: no report was written to {} ({why})",
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
