//! The channel through which `kvscope mark PID` and `kvscope dump PID` reach
//! a running process: request files (`*.mark` holding a label, `*.dump` a
//! reason) in a per-process directory that the shim's sampler polls. Shared
//! by both sides so that they always agree on the place and the trust rule.
//! Each side reads `KVSCOPE_CTL_DIR` itself (the shim once, at its start).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The variable that moves the control directory.
pub const CTL_DIR_VAR: &str = "KVSCOPE_CTL_DIR";

/// `$KVSCOPE_CTL_DIR` as given, or `/tmp/kvscope-ctl-<uid>`.
pub fn base_dir(configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/kvscope-ctl-{}", uid())))
}

/// The directory of one process's requests.
pub fn dir_for(base: &Path, pid: u32) -> PathBuf {
    base.join(pid.to_string())
}

pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Only this user (or root) may have made it, and nobody else may write to
/// it: in a shared /tmp another user could otherwise plant requests.
pub fn trusted(meta: &std::fs::Metadata) -> bool {
    (meta.uid() == uid() || meta.uid() == 0) && meta.mode() & 0o022 == 0
}
