//! Where a model comes from: a built-in preset, a config.json, or a
//! directory holding one (and perhaps model.safetensors.index.json).

use super::model::{from_config, Model};
use std::path::Path;

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

/// A preset name, a config.json, or a directory with one.
pub fn load(spec: &str) -> Result<Model, String> {
    if let Some(m) = preset(spec) {
        return Ok(m);
    }
    let path = Path::new(spec);
    if !path.exists() {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "--model {spec}: no such file or preset (presets: {})",
            names.join(", ")
        ));
    }
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
    let name = if path.is_dir() { path } else { &dir }
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && n != ".")
        .unwrap_or_else(|| file.display().to_string());
    from_config(&name, &v, checkpoint).map_err(|e| {
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
