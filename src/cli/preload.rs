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
