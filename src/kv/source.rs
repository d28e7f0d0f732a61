//! Where a model comes from: a config.json or a directory holding one (and
//! perhaps model.safetensors.index.json), a Hugging Face id in the local
//! cache, or a built-in preset.

use super::hub;
use super::model::{from_config, Model};
use std::path::{Path, PathBuf};

/// Built-in presets: the configs of public models, by short name.
pub const PRESETS: &[(&str, &str)] = &[
    ("llama-2-7b", include_str!("presets/llama-2-7b.json")),
    ("llama-2-70b", include_str!("presets/llama-2-70b.json")),
    ("llama-3.1-8b", include_str!("presets/llama-3.1-8b.json")),
    ("llama-3.1-70b", include_str!("presets/llama-3.1-70b.json")),
    (
        "mistral-7b-v0.1",
        include_str!("presets/mistral-7b-v0.1.json"),
    ),
    (
        "mixtral-8x7b-v0.1",
        include_str!("presets/mixtral-8x7b-v0.1.json"),
    ),
    (
        "qwen2.5-7b-instruct",
        include_str!("presets/qwen2.5-7b-instruct.json"),
    ),
    (
        "deepseek-v2-lite",
        include_str!("presets/deepseek-v2-lite.json"),
    ),
];

/// Short forms people type.
const ALIASES: &[(&str, &str)] = &[
    ("mistral-7b", "mistral-7b-v0.1"),
    ("mixtral-8x7b", "mixtral-8x7b-v0.1"),
    ("qwen2.5-7b", "qwen2.5-7b-instruct"),
];

pub fn preset(name: &str) -> Option<Model> {
    let key = name.to_ascii_lowercase();
    let key = ALIASES
        .iter()
        .find(|(a, _)| *a == key)
        .map(|(_, p)| p.to_string())
        .unwrap_or(key);
    let (name, text) = PRESETS.iter().find(|(n, _)| *n == key)?;
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    from_config(name, &v, None).ok()
}

/// A local directory or config file, a Hugging Face id from the local hub
/// cache, or a preset, in that order: a local path wins over a preset of the
/// same name. A note says which was used.
pub fn load(spec: &str) -> Result<Model, String> {
    load_from(spec, Path::new(spec), hub::cache_dir())
}

/// `load`, with the local candidate for `spec` and the hub cache given.
pub(crate) fn load_from(
    spec: &str,
    path: &Path,
    hub_dir: Option<PathBuf>,
) -> Result<Model, String> {
    if path.exists() {
        let mut m = load_path(path, &label(path))?;
        let what = if path.is_dir() {
            "local directory"
        } else {
            "local file"
        };
        m.notes.insert(
            0,
            match preset(spec) {
                Some(_) => format!(
                    "model from the {what} {spec} (it wins over the preset of the same name)"
                ),
                None => format!("model from the {what} {spec}"),
            },
        );
        return Ok(m);
    }
    if let Some(mut m) = preset(spec) {
        m.notes
            .insert(0, format!("model from the built-in preset {}", m.name));
        return Ok(m);
    }
    if hub::looks_like_id(spec) {
        let hub_dir = hub_dir.ok_or_else(|| {
            format!("--model {spec}: no Hugging Face cache (set HF_HUB_CACHE or HF_HOME)")
        })?;
        let dir = hub::snapshot(&hub_dir, spec)?;
        let mut m = load_path(&dir, spec)?;
        m.notes.insert(
            0,
            format!(
                "model from the Hugging Face cache: {}",
                dir.join("config.json").display()
            ),
        );
        return Ok(m);
    }
    let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "--model {spec}: no such file or preset, nor a Hugging Face id (presets: {})",
        names.join(", ")
    ))
}

/// A directory is named by itself; a file by its stem, unless that says
/// nothing (config.json), then by its directory.
fn label(path: &Path) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != ".")
    };
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if abs.is_dir() {
        return name(&abs).unwrap_or_else(|| path.display().to_string());
    }
    match abs.file_stem().map(|s| s.to_string_lossy().into_owned()) {
        Some(stem) if !stem.is_empty() && stem != "config" => stem,
        _ => abs
            .parent()
            .and_then(name)
            .unwrap_or_else(|| path.display().to_string()),
    }
}

/// A config.json, or a directory with one (and perhaps a safetensors index).
fn load_path(path: &Path, name: &str) -> Result<Model, String> {
    let (file, dir) = if path.is_dir() {
        (path.join("config.json"), path.to_path_buf())
    } else {
        (
            path.to_path_buf(),
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        )
    };
    let text = read_small(&file)?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: not JSON ({e})", file.display()))?;
    let checkpoint = checkpoint_bytes(&dir.join("model.safetensors.index.json"))?;
    from_config(name, &v, checkpoint).map_err(|e| {
        format!(
            "{}: {}",
            file.display(),
            e.trim_start_matches("config.json: ")
        )
    })
}

/// Config files are kilobytes (an index with every tensor, a few MB):
/// anything past this is not one, and is refused by the bytes read (a
/// device or a pipe claims 0 bytes).
const MAX_CONFIG_BYTES: u64 = 64 << 20;

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    crate::load::read_bounded(path, MAX_CONFIG_BYTES, "a model config")
}

/// metadata.total_size of a safetensors index, when the file exists.
fn checkpoint_bytes(index: &Path) -> Result<Option<u64>, String> {
    if !index.exists() {
        return Ok(None);
    }
    let text = read_small(index)?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not JSON ({e})", index.display()))?;
    v.pointer("/metadata/total_size")
        .and_then(|t| t.as_u64().or_else(|| t.as_f64().map(|f| f as u64)))
        .map(Some)
        .ok_or_else(|| format!("{}: no metadata.total_size", index.display()))
}
