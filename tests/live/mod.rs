//! Helpers for the monitoring tests: processes under the shim that hold
//! memory until stopped, the exporter as a child, a bounded HTTP GET on
//! loopback, and the Prometheus tools (required when
//! KVSCOPE_REQUIRE_PROMETHEUS=1, as `.ci/run` sets; skipped otherwise).
#![allow(dead_code)]

use super::common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `signals wait` holds: one cudaMalloc of 16 MiB on device 0.
pub const HELD: u64 = 16 << 20;

/// A child killed (SIGKILL) and reaped when dropped, so that a failing test
/// leaves nothing running.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends `sig` and waits (bounded) for the exit; the exit code or -signal.
    pub fn stop(&mut self, sig: i32, limit: Duration) -> i32 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.0.id() as i32, sig) };
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.0.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                return st.code().unwrap_or_else(|| -st.signal().unwrap_or(0));
            }
            assert!(
                Instant::now() < end,
                "pid {} still running after {limit:?}",
                self.0.id()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `signals wait` under the shim, publishing into `state`.
pub fn holder(state: &Path, out: &Path, env: &[(&str, &str)]) -> Guard {
    let mut all = vec![
        ("KVSCOPE_STATE_DIR", state.to_str().unwrap()),
        ("KVSCOPE_SAMPLE_MS", "50"),
    ];
    all.extend_from_slice(env);
    let child = common::client_command("signals", &["wait"], &all, true, out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Guard(child)
}

/// Polls `f` every 50 ms until it gives a value; fails after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state file of `pid` in `dir`, once there.
pub fn state_file(dir: &Path, pid: u32) -> Option<PathBuf> {
    let prefix = format!("kvscope-{pid}-");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&prefix) && n.ends_with(".state.json")
        })
}

/// `kvscope exporter --listen 127.0.0.1:0` on `state`; its address.
pub fn exporter(state: &Path, extra: &[&str]) -> (Guard, SocketAddr) {
    let mut child = Command::new(common::kvscope_bin())
        .args(["exporter", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the exporter says where it listens");
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|s| s.strip_suffix("/metrics"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (guard, addr)
}

/// One HTTP/1.0 GET on loopback, every step bounded; (status, body).
pub fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (u16, String) {
    let limit = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, limit).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.take(64 << 20).read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// The value of the first sample of `name` whose labels include every one of `labels`.
pub fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Sum of every sample of `name` whose labels include `labels`.
pub fn sum(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A Prometheus tool (`promtool`, `prometheus`) on PATH; None (the test
/// skips, saying so) unless KVSCOPE_REQUIRE_PROMETHEUS=1 makes it a failure.
pub fn prometheus_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("KVSCOPE_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "{name} not found and KVSCOPE_REQUIRE_PROMETHEUS=1 (Debian package prometheus)"
        );
        eprintln!("skipped: {name} not found (Debian package prometheus)");
    }
    found
}

/// A free port on loopback (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
