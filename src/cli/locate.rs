//! Finds libkvscope.so and the stand-in CUDA beside the kvscope binary (a
//! cargo build) or in the Python package it was installed with (`pip
//! install kvscope`), so no path has to be set, whatever the working
//! directory.

use super::error::{CliError, Result};
use super::installed;
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
/// (`cargo run`, `cargo test`), and beside the binary after `cargo build`;
/// else the one in the installed Python package.
pub fn shim_library() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("KVSCOPE_LIB") {
        return Ok(PathBuf::from(p));
    }
    let Some(d) = exe_dir() else {
        return Err(not_found());
    };
    let built = vec![
        d.join("libkvscope.so"),
        d.join("deps/libkvscope.so"),
        d.join("../lib/libkvscope.so"),
    ];
    let installed = installed::bundled_dirs(&d)
        .into_iter()
        .map(|b| b.join(installed::SHIM))
        .collect();
    newest(built)
        .or_else(|| first_existing(installed))
        .ok_or_else(not_found)
}

fn not_found() -> CliError {
    CliError::input("cannot find libkvscope.so beside the kvscope binary nor in its Python package; build it (cargo build --release), reinstall (pip install kvscope) or set KVSCOPE_LIB")
}

/// KVSCOPE_NATIVE_DIR, else kvscope-native beside the binary, else the
/// installed Python package's private copy, else where the build put it
/// (last: an installed binary must not use the build tree it came from).
pub fn native_dir() -> Result<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("KVSCOPE_NATIVE_DIR") {
        c.push(PathBuf::from(p));
    }
    if let Some(d) = exe_dir() {
        c.push(d.join("kvscope-native"));
        c.extend(
            installed::bundled_dirs(&d)
                .into_iter()
                .map(|b| b.join(installed::STAND_IN)),
        );
    }
    c.push(PathBuf::from(env!("KVSCOPE_NATIVE_DIR")));
    first_existing(c.into_iter().map(|d| d.join("serve_sim")).collect())
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .ok_or_else(|| CliError::input("cannot find the stand-in CUDA (kvscope-native) beside the kvscope binary nor in its Python package; rebuild, reinstall, or set KVSCOPE_NATIVE_DIR"))
}
