//! The channel through which `kvscope mark PID` and `kvscope dump PID` reach
//! a running process: request files (`*.mark` holding a label, `*.dump` a
//! reason) in a per-process directory that the shim's sampler polls. Shared
//! by both sides so that they always agree on the place and the trust rule.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// `$KVSCOPE_CTL_DIR`, or `/tmp/kvscope-ctl-<uid>`.
pub fn base_dir() -> PathBuf {
    std::env::var_os("KVSCOPE_CTL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/kvscope-ctl-{}", uid())))
}

pub fn dir_for(pid: u32) -> PathBuf {
    base_dir().join(pid.to_string())
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
