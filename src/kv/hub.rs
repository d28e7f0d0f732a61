//! Hugging Face model ids (`ORG/NAME`) resolved from the local hub cache,
//! never the network: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`, holding
//! `models--ORG--NAME/snapshots/<revision>/config.json`.

use std::path::{Path, PathBuf};

/// Whether `spec` reads as a Hugging Face id: ORG/NAME, one slash, no path syntax.
pub fn looks_like_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if ok(a) && ok(b))
}

/// The hub cache directory the environment names.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("HF_HUB_CACHE")
        .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/huggingface/hub")))
}

/// The snapshot directory of `id` in `hub` that has a config.json: the one
/// refs/main names, else the most recently written one.
pub fn snapshot(hub: &Path, id: &str) -> Result<PathBuf, String> {
    let repo = hub.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    let absent = || {
        format!(
            "--model {id}: not in the Hugging Face cache ({} has no config.json snapshot; kvscope does not download: run `huggingface-cli download {id} config.json` or pass a path)",
            repo.display()
        )
    };
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(rev.trim());
        if dir.join("config.json").is_file() {
            return Ok(dir);
        }
    }
    let entries = std::fs::read_dir(&snapshots).map_err(|_| absent())?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|d| d.join("config.json").is_file())
        .max_by_key(|d| {
            std::fs::metadata(d.join("config.json"))
                .and_then(|m| m.modified())
                .ok()
        })
        .ok_or_else(absent)
}
