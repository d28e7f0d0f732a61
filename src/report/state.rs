//! The live state file, `kvscope.state.v1`: what a process under the shim
//! publishes every sample period for `kvscope exporter` and `kvscope watch`
//! (docs/state.md). Shared by both sides so that they agree on the format,
//! the place and the trust rule; each side reads `KVSCOPE_STATE_DIR` itself
//! (the shim once, at its start).
//!
//! A compact summary, not a report: totals the shim keeps anyway (per-lane
//! counters, pool and VMM figures, failure counts), never the live table
//! row by row. Sizes are bytes, times ms since the Unix epoch.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const STATE_SCHEMA: &str = "kvscope.state.v1";

/// The variable that moves the state directory.
pub const STATE_DIR_VAR: &str = "KVSCOPE_STATE_DIR";

/// Phases (marker labels) a state file lists per device; the bytes of later
/// ones are added to the last (a program that marks every request must not
/// make the file, or the exporter's label set, grow without bound).
pub const MAX_PHASES: usize = 16;

/// Longest command line and label kept, in characters.
pub const MAX_TEXT: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub schema: String,
    pub pid: u32,
    pub hostname: Option<String>,
    /// When the shim started in the process.
    pub start_unix_ms: u64,
    /// When this file was written.
    pub written_unix_ms: u64,
    /// How often it is rewritten (KVSCOPE_SAMPLE_MS).
    pub sample_ms: u64,
    pub run_id: Option<String>,
    pub rank: Option<u32>,
    pub local_rank: Option<u32>,
    pub world_size: Option<u32>,
    /// The command line, arguments joined by spaces, cut at `MAX_TEXT`.
    pub command: String,
    /// KVSCOPE_MODEL_NAME: the served model, as vLLM's `model_name` label spells it.
    pub model_name: Option<String>,
    pub devices: Vec<DeviceState>,
    /// Pinned host memory, all devices together.
    pub host: SpaceState,
    pub vmm: VmmState,
    /// Failed calls by entry point and error code.
    pub failures: Vec<FailureCount>,
    /// The latest marker's label, if any.
    pub last_marker: Option<String>,
    /// State files this process could not write (counted, never fatal).
    pub write_errors: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceState {
    /// The in-process ordinal (what `cudaSetDevice` takes).
    pub device: u32,
    /// `cuDeviceGetUuid`, as nvidia-smi and dcgm-exporter print it (`GPU-…`).
    pub uuid: Option<String>,
    pub total_bytes: Option<u64>,
    /// total − free, as the driver last said (every process on the GPU).
    pub used_bytes: Option<u64>,
    pub memory: SpaceState,
    pub managed: SpaceState,
    /// Live device bytes plus what stream-ordered pools hold free (the
    /// timeline's `reserved_bytes`).
    pub reserved_bytes: u64,
    pub pool_reserved_bytes: u64,
    pub pool_used_bytes: u64,
    /// Physical VMM memory created on this device (`cuMemCreate`, not released).
    pub vmm_physical_bytes: u64,
    /// The framework's own counters (PyTorch's caching allocator), when reported.
    pub framework_allocated_bytes: Option<u64>,
    pub framework_reserved_bytes: Option<u64>,
    /// Live device bytes by the phase they were allocated in, at most `MAX_PHASES`.
    pub phases: Vec<PhaseBytes>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpaceState {
    pub live_bytes: u64,
    pub live_count: u64,
    pub peak_bytes: u64,
    pub allocs: u64,
    pub frees: u64,
    pub failures: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VmmState {
    pub reserved_bytes: u64,
    pub physical_bytes: u64,
    pub mapped_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureCount {
    pub api: String,
    pub code: i32,
    /// The error's name as reports give it (`out_of_memory`; `other` for a code kvscope does not name).
    pub code_name: String,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseBytes {
    /// The marker that opened the phase ("start" before the first marker).
    pub phase: String,
    pub bytes: u64,
    pub count: u64,
}

/// `$KVSCOPE_STATE_DIR` as given, else `$XDG_RUNTIME_DIR/kvscope`, else
/// `/tmp/kvscope-state-<uid>` (not `/tmp/kvscope-<uid>`: reports fall back there).
pub fn base_dir(configured: Option<&Path>, xdg_runtime: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    match xdg_runtime {
        Some(x) if x.is_absolute() => x.join("kvscope"),
        _ => PathBuf::from(format!("/tmp/kvscope-state-{}", super::control::uid())),
    }
}

/// `base_dir` from this process's environment: the one reading of
/// `KVSCOPE_STATE_DIR` and `XDG_RUNTIME_DIR` that the shim (at start, in
/// its config) and the reader share.
pub fn base_dir_from_env() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
    base_dir(
        var(STATE_DIR_VAR).as_deref(),
        var("XDG_RUNTIME_DIR").as_deref(),
    )
}

/// The file of one process: its pid and start time (a container's
/// processes are often PID 1 every time).
pub fn file_name(pid: u32, start_unix_ms: u64) -> String {
    format!("kvscope-{pid}-{start_unix_ms}.state.json")
}

/// Whether a directory entry is a state file (not a temporary one).
pub fn is_state_file(name: &str) -> bool {
    name.starts_with("kvscope-") && name.ends_with(".state.json")
}

/// The rule for the directory: this user's, nobody else may write to it.
pub fn trusted_dir(meta: &std::fs::Metadata) -> Result<(), String> {
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    if meta.uid() != super::control::uid() {
        return Err(format!("owned by uid {}, not ours", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by others (mode {:o})",
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Creates the directory (0700; its parents as usual) or checks the one there.
pub fn prepare_dir(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    trusted_dir(&meta).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Whether `f`, opened from `path`, is stale: no writer holds its lock, and
/// the name still points at it (a writer renames a new, locked file over
/// the old one, whose lock it then drops). Takes a shared lock on `f` when
/// it is free (released when `f` is closed).
pub fn stale(f: &File, path: &Path) -> bool {
    // SAFETY: a valid descriptor owned by `f`.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
        return false;
    }
    match (f.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Opens a state file for reading, never following a link or blocking.
pub fn open(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// Removes the stale state files of `dir` (processes killed before their
/// exit handler); at most `limit` entries looked at.
pub fn remove_stale(dir: &Path, limit: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten().take(limit) {
        let path = e.path();
        if !is_state_file(&e.file_name().to_string_lossy()) {
            continue;
        }
        if let Ok(f) = open(&path) {
            if stale(&f, &path) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// A UUID as nvidia-smi prints it: `GPU-` and 8-4-4-4-12 hex digits.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `s` cut at `MAX_TEXT` characters.
pub fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_print_as_nvidia_smi_does() {
        let mut b = [0u8; 16];
        b[0] = 0xab;
        b[15] = 0x01;
        assert_eq!(format_uuid(&b), "GPU-ab000000-0000-0000-0000-000000000001");
    }

    #[test]
    fn the_default_directory() {
        let x = Path::new("/run/user/7");
        assert_eq!(base_dir(None, Some(x)), x.join("kvscope"));
        assert_eq!(base_dir(Some(Path::new("/s")), Some(x)), Path::new("/s"));
        assert!(base_dir(None, Some(Path::new("rel")))
            .display()
            .to_string()
            .starts_with("/tmp/kvscope-state-"));
        assert!(is_state_file(&file_name(12, 34)));
        assert!(!is_state_file(".tmp-kvscope-12-34.state.json.x"));
    }
}
