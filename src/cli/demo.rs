//! `kvscope demo`: serve_sim under the shim on the stand-in CUDA, with a
//! leak planted, then the whole diagnosis against the model it simulates.
//! Its output fits 80 columns, and its temporary directory goes on every
//! way out: an error, a closed pipe (`kvscope demo | head`), Ctrl-C.

use super::error::{CliError, Result};
use super::locate;
use super::model_args::{model_ctx, ModelArgs};
use super::preload::{preload_value, reports_since};
use crate::check::{context::Thresholds, job::check, kind::Severity};
use crate::load::load;
use crate::render::{html, text};
use crate::units::{bytes, count};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, SystemTime};

/// The simulated workload: Llama-3.1-8B's shape (serve_sim's defaults) in
/// vLLM's layout, 8 requests 4 at a time, 64 MiB kept after each.
const ARGS: &[&str] = &[
    "--pattern",
    "vllm",
    "--requests",
    "8",
    "--concurrency",
    "4",
    "--step-ms",
    "2",
    "--leak",
    "64MiB",
];
const MODEL: &str = "llama-3.1-8b";
const WIDTH: usize = 80;

/// Why the demo stopped early.
enum Stop {
    Error(CliError),
    /// Nobody reads the output any more (`| head`).
    Pipe,
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(i32),
}

impl From<CliError> for Stop {
    fn from(e: CliError) -> Self {
        Stop::Error(e)
    }
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Stop::Error(CliError::input(e))
    }
}

/// The terminating signal received, 0 while none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
const CAUGHT: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

fn stopped() -> std::result::Result<(), Stop> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => Ok(()),
        s => Err(Stop::Signal(s)),
    }
}

pub fn run(keep: Option<PathBuf>) -> Result<i32> {
    // SAFETY: plain dispositions; the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        for s in CAUGHT {
            libc::signal(
                s,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    // The temporary directory is gone when `demo` returns, however it does.
    let result = demo(keep);
    let die_by = |sig: i32| -> i32 {
        // SAFETY: the default action, then the signal: the shell sees what
        // it would have seen without the clean-up.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        128 + sig
    };
    match result {
        Ok(code) => Ok(code),
        Err(Stop::Error(e)) => Err(e),
        Err(Stop::Pipe) => Ok(die_by(libc::SIGPIPE)),
        Err(Stop::Signal(s)) => Ok(die_by(s)),
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh private directory (one left by a killed demo of the same pid
/// is replaced).
fn temp_dir() -> Result<TempDir> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("kvscope-demo-{}", std::process::id()));
    let make = || std::fs::DirBuilder::new().mode(0o700).create(&dir);
    if make().is_err() {
        let _ = std::fs::remove_dir_all(&dir);
        make().map_err(|e| CliError::input(format!("cannot create {}: {e}", dir.display())))?;
    }
    Ok(TempDir(dir))
}

/// Prints lines wrapped to 80 columns; a closed pipe or a signal stops it.
fn say(text: &str) -> std::result::Result<(), Stop> {
    stopped()?;
    let mut out = std::io::stdout().lock();
    for line in text.lines() {
        for l in wrap(line, WIDTH) {
            writeln!(out, "{l}").map_err(|_| Stop::Pipe)?;
        }
    }
    out.flush().map_err(|_| Stop::Pipe)
}

/// A line in lines of at most `width` characters, broken at spaces (never
/// between a number and its unit; columns kept); the rest indented under
/// the first (under the text of a `- ` item), +4.
pub(super) fn wrap(line: &str, width: usize) -> Vec<String> {
    if line.chars().count() <= width {
        return vec![line.to_string()];
    }
    let indent = line.len() - line.trim_start().len();
    let bullet = if line.trim_start().starts_with("- ") {
        2
    } else {
        4
    };
    let hang = " ".repeat((indent + bullet).min(width / 2));
    // Words with the spaces before them; a unit joins its number.
    let mut words: Vec<(usize, String)> = Vec::new();
    let mut gap = 0;
    for w in line[indent..].split(' ') {
        if w.is_empty() {
            gap += 1;
            continue;
        }
        let unit = matches!(
            w.trim_end_matches([',', ';', ':', ')', '.']),
            "B" | "KiB" | "MiB" | "GiB" | "TiB" | "ms" | "s"
        );
        match words.last_mut() {
            Some((_, prev)) if unit && gap == 1 && prev.ends_with(|c: char| c.is_ascii_digit()) => {
                prev.push(' ');
                prev.push_str(w);
            }
            _ => words.push((gap, w.to_string())),
        }
        gap = 1;
    }
    let mut lines = Vec::new();
    let mut cur = line[..indent].to_string();
    let mut fresh = true;
    for (gap, word) in words {
        let used = cur.chars().count();
        if !fresh && used + gap + word.chars().count() > width {
            lines.push(std::mem::replace(&mut cur, hang.clone()));
            fresh = true;
        }
        if !fresh {
            cur.push_str(&" ".repeat(gap));
        }
        // A word longer than a whole line is cut.
        let mut rest: Vec<char> = word.chars().collect();
        while cur.chars().count() + rest.len() > width {
            let room = width - cur.chars().count();
            cur.extend(rest.drain(..room));
            lines.push(std::mem::replace(&mut cur, hang.clone()));
        }
        cur.extend(rest);
        fresh = false;
    }
    lines.push(cur);
    lines
}

fn demo(keep: Option<PathBuf>) -> std::result::Result<i32, Stop> {
    let lib = locate::shim_library()?;
    let native = locate::native_dir()?;
    say("== 1. A serving workload under the shim")?;
    // Made after the first line: a reader gone at once leaves nothing.
    let (dir, temporary) = match keep {
        Some(d) => {
            super::private::create_dir(&d)?;
            (d, None)
        }
        None => {
            let t = temp_dir()?;
            (t.0.clone(), Some(t))
        }
    };
    let since = SystemTime::now() - Duration::from_secs(1);
    say(&format!(
        "   LD_PRELOAD=libkvscope.so serve_sim {} \\\n       {}",
        ARGS[..4].join(" "),
        ARGS[4..].join(" ")
    ))?;
    say("   Llama-3.1-8B's shape on one simulated 80 GiB GPU, 8 requests 4 at a time; a leak of 64 MiB per request is planted.")?;
    let output = serve(&native.join("serve_sim"), &lib, &dir)?;
    if !output.status.success() {
        return Err(Stop::Error(CliError {
            message: format!(
                "serve_sim failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            code: 1,
        }));
    }
    say(&served(&String::from_utf8_lossy(&output.stdout)))?;
    let reports = reports_since(&dir, since);
    let Some(path) = reports
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
    else {
        return Err(Stop::Error(CliError {
            message: format!("no exit report in {}", dir.display()),
            code: 1,
        }));
    };
    let r = load(path)?;

    say(&format!(
        "\n== 2. kvscope check {} --model {MODEL}",
        if temporary.is_some() {
            "<the exit report>".to_string()
        } else {
            path.display().to_string()
        }
    ))?;
    let args = ModelArgs {
        model: Some(MODEL.into()),
        ..default_model_args()
    };
    let mut notes = Vec::new();
    let ctx = model_ctx(&args, 1, None, None, &mut notes)?;
    let result = check(
        vec![(path.display().to_string(), r.clone())],
        ctx.as_ref(),
        Thresholds::default(),
        Severity::Critical,
    );
    // The check's exit status is the check's: said as such, not as ours.
    let mut check_status = None;
    for line in text::render(&result).lines() {
        let line = match line.split_once(" -> exit status ") {
            Some((head, code)) => {
                check_status = Some(code.trim().to_string());
                head
            }
            None => line,
        };
        say(&format!("   {line}"))?;
    }
    if let Some(code) = check_status {
        say(&format!(
            "   (kvscope check exits {code} on this report; the demo itself exits 0: it ran.)"
        ))?;
    }
    if temporary.is_none() {
        let page = dir.join("demo.html");
        let text = html::render(&r, &result).map_err(CliError::input)?;
        super::private::write(&page, text.as_bytes())?;
        say(&format!("\n== 3. The same as a page: {}", page.display()))?;
    } else {
        say("\n   (kvscope demo --keep DIR keeps the report, and writes it as an HTML page too)")?;
    }
    drop(temporary);
    Ok(0)
}

/// serve_sim under the shim, its output captured; a signal ends it early.
fn serve(sim: &Path, lib: &Path, dir: &Path) -> std::result::Result<std::process::Output, Stop> {
    let child = Command::new(sim)
        .args(ARGS)
        .env("LD_PRELOAD", preload_value(lib))
        .env("KVSCOPE_OUT", dir)
        .env("KVSCOPE_SAMPLE_MS", "10")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::input(format!("cannot run serve_sim: {e}")))?;
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(out) => {
                stopped()?;
                return out.map_err(|e| Stop::Error(CliError::input(format!("serve_sim: {e}"))));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Err(s) = stopped() {
                    // SAFETY: kill has no memory-safety preconditions; the
                    // child is not yet reaped (its waiter has not returned).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    let _ = rx.recv();
                    return Err(s);
                }
            }
            Err(_) => return Err(Stop::Error(CliError::input("serve_sim: lost its waiter"))),
        }
    }
}

/// What serve_sim said it did (its `key=value` lines), in a sentence.
fn served(stdout: &str) -> String {
    let f: BTreeMap<&str, u64> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter_map(|(k, v)| Some((k.trim(), v.trim().parse().ok()?)))
        .collect();
    let mut s = String::from("   serve_sim");
    if let Some(n) = f.get("requests_done") {
        s += &format!(" served {} requests", count(*n));
    } else {
        s += " ran";
    }
    if let (Some(t), Some(b)) = (f.get("kv_capacity_tokens"), f.get("kv_cache_bytes")) {
        s += &format!(" from a KV cache of {} tokens ({})", count(*t), bytes(*b));
    }
    if let Some(l) = f.get("leaked_bytes") {
        s += &format!(
            "; {} stayed allocated after them (the planted leak)",
            bytes(*l)
        );
    }
    s + "."
}

/// The fit flags at their defaults, as clap would fill them.
fn default_model_args() -> ModelArgs {
    use clap::{Args, Command, FromArgMatches};
    let m = ModelArgs::augment_args(Command::new("demo")).get_matches_from(["demo"]);
    ModelArgs::from_arg_matches(&m).unwrap_or_else(|_| unreachable!("defaults always parse"))
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn lines_wrap_within_the_width_with_a_hanging_indent() {
        let line = format!("   - {}", "word ".repeat(40));
        let out = wrap(&line, 40);
        assert!(out.iter().all(|l| l.chars().count() <= 40), "{out:?}");
        assert!(out[1].starts_with("     word"), "{out:?}");
        let long = format!("  {}", "x".repeat(100));
        assert!(wrap(&long, 40).iter().all(|l| l.chars().count() <= 40));
        assert_eq!(wrap("short", 40), vec!["short"]);
    }
}
