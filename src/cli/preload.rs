//! Running a program under the shim: the LD_PRELOAD value, and finding the
//! reports it wrote. Shared by `run` and `demo`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Reports in `dir` written since `since`, oldest first.
pub fn reports_since(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("kvscope-") && n.ends_with(".json")
        })
        .filter_map(|e| {
            let t = e.metadata().ok()?.modified().ok()?;
            (t >= since).then(|| (t, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// LD_PRELOAD with the shim first, keeping what was there.
pub fn preload_value(lib: &Path) -> String {
    match std::env::var("LD_PRELOAD") {
        Ok(v) if !v.trim().is_empty() => format!("{} {v}", lib.display()),
        _ => lib.display().to_string(),
    }
}

/// A KVSCOPE_* on/off variable as the shim reads it (1/0, true/false,
/// yes/no, on/off); None when unset or unreadable.
pub fn env_flag(name: &str) -> Option<bool> {
    match std::env::var(name)
        .ok()?
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}
