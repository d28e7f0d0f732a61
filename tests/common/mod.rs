//! Helpers for the integration tests: run the C clients of native/ with and
//! without the shim, collect their reports. Reports are read as plain JSON so
//! that no test binary links the shim library (and its dlsym hook).
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn kvscope_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kvscope"))
}

/// The newest libkvscope.so cargo built: beside the binary after `cargo
/// build`, in deps/ when built only as a dependency (as `cargo test` does).
pub fn shim_lib() -> PathBuf {
    let dir = kvscope_bin().parent().unwrap().to_path_buf();
    [dir.join("libkvscope.so"), dir.join("deps/libkvscope.so")]
        .into_iter()
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .expect("libkvscope.so: cargo builds it with the package")
}

pub fn native(name: &str) -> PathBuf {
    PathBuf::from(env!("KVSCOPE_NATIVE_DIR")).join(name)
}

/// A fresh, empty directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let d = kvscope_bin()
        .parent()
        .unwrap()
        .join("test-scratch")
        .join(env!("CARGO_CRATE_NAME"))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Run {
    pub out: Output,
    pub reports: Vec<PathBuf>,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn code(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    /// The one report whose name ends with `-{kind}.json`.
    pub fn report(&self, kind: &str) -> Value {
        load(self.path(kind))
    }
    /// The path of that report.
    pub fn path(&self, kind: &str) -> &Path {
        let want = format!("-{kind}.json");
        let found: Vec<_> = self
            .reports
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(&want))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "want one {kind} report, have {:?}\nstderr: {}",
            self.reports,
            self.stderr()
        );
        found[0]
    }
}

pub fn load(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs a client; with `shim`, preloaded with reports going to `out`.
pub fn run(client: &str, args: &[&str], env: &[(&str, &str)], shim: bool, out: &Path) -> Run {
    let mut cmd = client_command(client, args, env, shim, out);
    let out_ = cmd.output().unwrap();
    Run {
        out: out_,
        reports: reports_in(out),
    }
}

/// As `run`, killed and failed after `limit`: a hang is a test failure, not a stuck suite.
pub fn run_watched(
    client: &str,
    args: &[&str],
    env: &[(&str, &str)],
    shim: bool,
    out: &Path,
    limit: std::time::Duration,
) -> Run {
    let mut cmd = client_command(client, args, env, shim, out);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out_) => Run {
            out: out_.unwrap(),
            reports: reports_in(out),
        },
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{client} {args:?} still running after {limit:?}: killed (a deadlock?)");
        }
    }
}

pub fn client_command(
    client: &str,
    args: &[&str],
    env: &[(&str, &str)],
    shim: bool,
    out: &Path,
) -> Command {
    let mut cmd = Command::new(native(client));
    cmd.args(args)
        .env("KVSCOPE_OUT", out)
        .env_remove("LD_PRELOAD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if shim {
        cmd.env("LD_PRELOAD", shim_lib());
    }
    cmd
}

/// The reports (*.json) in a directory, sorted.
pub fn reports_in(out: &Path) -> Vec<PathBuf> {
    let mut reports: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    reports.sort();
    reports
}

/// `expect.<key>=<value>` lines printed by a client.
pub fn expectations(stdout: &str) -> BTreeMap<String, u64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("expect."))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
        .collect()
}

/// `key=value` lines printed by serve_sim.
pub fn figures(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The device entry of a report.
pub fn device(r: &Value, d: u64) -> &Value {
    r["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| u(&x["device"]) == d)
        .unwrap_or_else(|| panic!("no device {d}"))
}

pub fn kvscope(args: &[&str]) -> Output {
    Command::new(kvscope_bin()).args(args).output().unwrap()
}

/// A command that must have succeeded; its stderr says why when not.
#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether python3 is there; without it the test that asks is skipped (one
/// SKIPPED line), unless KVSCOPE_REQUIRE_PYTHON=1 (CI) makes it a failure.
pub fn python() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var("KVSCOPE_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
        panic!("python3 is required (KVSCOPE_REQUIRE_PYTHON=1)");
    }
    if !found {
        eprintln!("SKIPPED: no python3");
    }
    found
}

/// `34,952`: Python's `f"{n:,}"`, as engines print counts in their logs.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `sleep 30` with the shim preloaded but never started (it makes no CUDA
/// call), returned once the loader has mapped the shim, with its pid; the
/// caller kills it.
pub fn preloaded_sleeper() -> (std::process::Child, String) {
    let child = Command::new("sleep")
        .arg("30")
        .env("LD_PRELOAD", shim_lib())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let loaded = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("libkvscope"))
    });
    assert!(loaded, "the shim was not mapped into pid {pid}");
    (child, pid)
}
