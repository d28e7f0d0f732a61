//! `kvscope devices`: device-level reading through the stand-in NVML of a
//! process run WITHOUT the shim. The stand-in driver counts what the
//! process holds (its context and memory no interposer sees included) and
//! the stand-in NVML reports it, as the real driver and NVML do.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MIB: u64 = 1 << 20;
const CONTEXT: u64 = 300 * MIB;

fn devices(nvml_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(kvscope_bin());
    cmd.arg("devices")
        .args(args)
        .env("LD_LIBRARY_PATH", native(""))
        .env("SIMCUDA_NVML_DIR", nvml_dir)
        .env_remove("LD_PRELOAD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn json(nvml_dir: &Path, pid: u32) -> Value {
    let out = devices(nvml_dir, &["--json", "--pid", &pid.to_string()], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What `pid` holds over all GPUs, by the NVML (host) PID.
fn held(j: &Value, pid: u32) -> Option<u64> {
    let rows: Vec<&Value> = j["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["processes"].as_array().unwrap())
        .filter(|p| p["host_pid"] == pid)
        .collect();
    if rows.is_empty() {
        return None;
    }
    if j["pids_mapped"] == true {
        assert!(rows.iter().all(|p| p["pid"] == pid), "{j}");
    }
    Some(rows.iter().map(|p| p["used_bytes"].as_u64().unwrap()).sum())
}

struct Holder {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    fn start(nvml_dir: &Path, sizes: &[&str]) -> Holder {
        let ctx = CONTEXT.to_string();
        let mut child = client_command(
            "hold",
            sizes,
            &[
                ("SIMCUDA_NVML_DIR", nvml_dir.to_str().unwrap()),
                ("SIMCUDA_CONTEXT_MEM", ctx.as_str()),
            ],
            false,
            nvml_dir,
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Holder { child, lines }
    }

    /// The next "pid=N held=B": bounded, a hang fails the test.
    fn next(&mut self) -> (u32, u64) {
        let l = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("hold said nothing for 20 s");
        let f = figures(&l.replace(' ', "\n"));
        (f["pid"].parse().unwrap(), f["held"].parse().unwrap())
    }

    fn go_on(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"next\n").unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success());
    }
}

#[test]
fn a_process_without_the_shim_shows_its_bytes_and_its_growth() {
    let dir = scratch("grow");
    let mut h = Holder::start(&dir, &["1GiB", "--unhooked", "256MiB", "512MiB"]);
    let (pid, b1) = h.next();
    assert_eq!(b1, 1 << 30);
    let j = json(&dir, pid);
    assert_eq!(j["schema"], "kvscope.devices.v1");
    let first = held(&j, pid).unwrap_or_else(|| panic!("pid {pid} not listed: {j}"));
    // Device level: its context too, which no allocation hook would see.
    assert_eq!(first, b1 + CONTEXT);
    // Memory taken by a path no interposer sees still counts.
    h.go_on();
    let (_, b2) = h.next();
    assert_eq!(held(&json(&dir, pid), pid), Some(b2 + CONTEXT));
    h.go_on();
    let (_, b3) = h.next();
    let third = held(&json(&dir, pid), pid).unwrap();
    assert_eq!(third - first, b3 - b1, "growth between two reads");
    assert_eq!(third - first, 768 * MIB);
    // The text form names the process and its bytes.
    let text = String::from_utf8_lossy(&devices(&dir, &[], &[]).stdout).into_owned();
    assert!(
        text.contains(&pid.to_string()) && text.contains("2.04 GiB"),
        "{text}"
    );
    h.finish();
    // Gone: no longer listed.
    assert_eq!(held(&json(&dir, pid), pid), None);
}

#[test]
fn without_nvml_it_refuses_in_one_line() {
    let dir = scratch("absent");
    let out = devices(&dir, &[], &[("SIMNVML_DRIVER", "absent")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no NVML") && err.contains("Driver Not Loaded"),
        "{err}"
    );
    // No library at all (where none is installed: a GPU host has the real one).
    let out = Command::new(kvscope_bin())
        .arg("devices")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("libnvidia-ml.so.1"), "{err}");
    }
}
