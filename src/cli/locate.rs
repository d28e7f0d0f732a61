//! Finds libkvscope.so and the stand-in CUDA beside the kvscope binary, so
//! no path has to be set, whatever the working directory.

use super::error::{CliError, Result};
use std::path::PathBuf;

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()?
        .canonicalize()
        .ok()?
        .parent()
        .map(|p| p.to_path_buf())
}

fn first_existing(candidates: Vec<PathBuf>) -> Option<PathBuf> {
    candidates.into_iter().find(|p| p.exists())
}

fn newest(candidates: Vec<PathBuf>) -> Option<PathBuf> {
    candidates
        .into_iter()
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

/// KVSCOPE_LIB, else the newest libkvscope.so beside the binary: cargo
/// leaves it in deps/ when it was built only as the binary's dependency
/// (`cargo run`, `cargo test`), and beside the binary after `cargo build`.
pub fn shim_library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("KVSCOPE_LIB") {
        return Ok(PathBuf::from(p));
    }
    let c = match exe_dir() {
        Some(d) => vec![
            d.join("libkvscope.so"),
            d.join("deps/libkvscope.so"),
            d.join("../lib/libkvscope.so"),
        ],
        None => Vec::new(),
    };
    newest(c).ok_or_else(|| {
        CliError::input("cannot find libkvscope.so beside the kvscope binary; build it (cargo build --release) or set KVSCOPE_LIB")
    })
}

/// KVSCOPE_NATIVE_DIR, else kvscope-native beside the binary, else where the build put it.
pub fn native_dir() -> Result<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("KVSCOPE_NATIVE_DIR") {
        c.push(PathBuf::from(p));
    }
    if let Some(d) = exe_dir() {
        c.push(d.join("kvscope-native"));
    }
    c.push(PathBuf::from(env!("KVSCOPE_NATIVE_DIR")));
    first_existing(c.into_iter().map(|d| d.join("serve_sim")).collect())
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .ok_or_else(|| CliError::input("cannot find the stand-in CUDA (kvscope-native) beside the kvscope binary; rebuild, or set KVSCOPE_NATIVE_DIR"))
}
