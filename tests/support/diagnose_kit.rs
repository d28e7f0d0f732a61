//! The stand-in OpenAI-compatible server (tests/support/openai_stub.py)
//! under the shim, and `kvscope diagnose` run against it: shared by
//! tests/diagnose.rs and tests/diagnose_failures.rs.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A small llama: 16 KiB of KV per token, 102 MiB of weights.
/// The stand-in server's model (also the README's example).
pub const CONFIG: &str = include_str!("stub-model/config.json");

pub struct Stub {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for Stub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scratch directory of one test: the model, the control channel, reports.
pub fn setup(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(dir.join("model")).unwrap();
    std::fs::write(dir.join("model/config.json"), CONFIG).unwrap();
    let ctl = dir.join("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// The model's weights, as kvscope's model counts them.
pub fn weights(dir: &Path) -> u64 {
    let out = kvscope(&[
        "fit",
        "--model",
        dir.join("model").to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["weights_bytes"].as_u64().unwrap()
}

pub fn start(dir: &Path, shim: bool, args: &[&str], env: &[(&str, &str)]) -> Stub {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/openai_stub.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg("--native")
        .arg(env!("KVSCOPE_NATIVE_DIR"))
        .arg("--config")
        .arg(dir.join("model"))
        .arg("--weights")
        .arg(weights(dir).to_string())
        .args(args)
        .env("KVSCOPE_OUT", dir.join("out"))
        .env("KVSCOPE_CTL_DIR", dir.join("ctl"))
        .env("KVSCOPE_SAMPLE_MS", "20")
        .env("KVSCOPE_IDLE_MS", "0")
        .env_remove("LD_PRELOAD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if shim {
        cmd.env("LD_PRELOAD", shim_lib());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let port = line
        .trim()
        .strip_prefix("port=")
        .and_then(|p| p.parse().ok());
    let mut stub = Stub {
        child,
        port: 0,
        dir: dir.to_path_buf(),
    };
    stub.port = port.unwrap_or_else(|| panic!("the stub did not start: {line:?}"));
    stub
}

pub struct Diag {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Diag {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\nstderr: {}", self.stdout, self.stderr))
    }
}

pub fn diagnose(stub: &Stub, extra: &[&str]) -> Diag {
    diagnose_env(stub, extra, &[])
}

/// `diagnose` with more of kvscope's environment (the stand-in NVML's).
pub fn diagnose_env(stub: &Stub, extra: &[&str], env: &[(&str, &str)]) -> Diag {
    let url = format!("http://127.0.0.1:{}", stub.port);
    let mut args = vec![
        "diagnose",
        "--url",
        &url,
        "--context",
        "256",
        "--quiet-ms",
        "300",
    ];
    if !extra.contains(&"--long-context") {
        args.extend(["--long-context", "2048"]);
    }
    if !extra.contains(&"--timeout") {
        args.extend(["--timeout", "60"]);
    }
    args.extend(extra);
    run_diagnose_env(&stub.dir, &args, env)
}

pub fn run_diagnose(dir: &Path, args: &[&str]) -> Diag {
    run_diagnose_env(dir, args, &[])
}

pub fn run_diagnose_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Diag {
    let mut cmd = Command::new(kvscope_bin());
    cmd.args(args)
        .env("KVSCOPE_CTL_DIR", dir.join("ctl"))
        .env_remove("LD_PRELOAD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("kvscope diagnose {args:?} ran past 90 s: killed");
        }
    };
    Diag {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn names(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["severity"].as_str().unwrap(),
                f["name"].as_str().unwrap()
            )
        })
        .collect()
}

pub fn steps(v: &Value) -> Vec<(String, String)> {
    v["processes"][0]["devices"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_string(),
                s["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
