//! What every benchmark uses: medians, verdicts, the built shim and
//! binaries, and the stand-in's timing client.

use std::path::PathBuf;
use std::process::Command;

pub const RUNS: usize = 5;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn verdict(pass: bool, shortfall: impl FnOnce() -> String) -> String {
    if pass {
        "PASS".into()
    } else {
        format!("SHORT: {}", shortfall())
    }
}

pub fn native(name: &str) -> PathBuf {
    PathBuf::from(env!("KVSCOPE_NATIVE_DIR")).join(name)
}

/// The newest libkvscope.so of this profile (beside the binaries or in deps/).
pub fn shim_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>/examples");
    [
        profile.join("libkvscope.so"),
        profile.join("deps/libkvscope.so"),
    ]
    .into_iter()
    .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
    .max()
    .map(|(_, p)| p)
    .expect("libkvscope.so not built: cargo build --release")
}

pub fn kvscope_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("profile dir")
        .join("kvscope")
}

pub fn figure(out: &str, key: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

pub fn client(args: &[&str], shim: bool, env: &[(&str, &str)]) -> String {
    client_with(args, shim.then(shim_lib), env)
}

/// bench_client, preloading `shim` when given.
pub fn client_with(args: &[&str], shim: Option<PathBuf>, env: &[(&str, &str)]) -> String {
    let scratch = std::env::temp_dir().join("kvscope-bench");
    let _ = std::fs::create_dir_all(&scratch);
    let mut c = Command::new(native("bench_client"));
    c.args(args)
        .env("KVSCOPE_OUT", &scratch)
        .env_remove("LD_PRELOAD");
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(lib) = shim {
        c.env("LD_PRELOAD", lib);
    }
    let out = c.output().expect("bench_client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
