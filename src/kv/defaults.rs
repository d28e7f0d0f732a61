//! What a config.json leaves out, its config class fills in: Hugging Face
//! saves only the fields that differ from the class defaults (google/gemma-3-27b-it's
//! text_config has no vocab_size nor max_position_embeddings). kvscope reads
//! the same defaults, per `model_type`, and says when it used one.
//!
//! The values, in `classes`, are those of the transformers config classes in
//! release v4.57.0, for the fields kvscope reads. Only a field that is absent
//! is filled: a field given as null keeps its meaning (`sliding_window: null`
//! is "no window").

use super::classes::{Def, CLASSES, SPELLINGS, TRANSFORMERS_VERSION};
use serde_json::{Map, Value};
use Def::{B, U};

/// The model_type transformers reads a config under: Falcon's first
/// checkpoints say RefinedWeb / RefinedWebModel (transformers maps them to falcon).
pub fn canonical(model_type: &str) -> &str {
    match model_type {
        "RefinedWeb" | "RefinedWebModel" => "falcon",
        t => t,
    }
}

fn present(map: &Map<String, Value>, parent: Option<&Map<String, Value>>, key: &str) -> bool {
    let spellings = SPELLINGS
        .iter()
        .find(|s| s.contains(&key))
        .copied()
        .unwrap_or(std::slice::from_ref(&key));
    spellings
        .iter()
        .any(|k| map.contains_key(*k) || parent.is_some_and(|p| p.contains_key(*k)))
}

fn show(d: Def) -> String {
    match d {
        U(n) => crate::units::count(n),
        B(b) => b.to_string(),
    }
}

/// Fills the fields `map` lacks (nor `parent` has, for a text_config) from
/// the config class of `model_type`; one note names each default used.
/// `path` prefixes the field names in notes ("text_config." or "").
pub fn apply(
    map: &mut Map<String, Value>,
    parent: Option<&Map<String, Value>>,
    model_type: &str,
    path: &str,
    notes: &mut Vec<String>,
) {
    let Some(class) = CLASSES.iter().find(|c| c.model_types.contains(&model_type)) else {
        return;
    };
    let mut used = Vec::new();
    for &(key, def) in class.fields {
        if present(map, parent, key) {
            continue;
        }
        map.insert(
            key.to_string(),
            match def {
                U(n) => Value::from(n),
                B(b) => Value::from(b),
            },
        );
        used.push(format!("{path}{key} {}", show(def)));
    }
    if !used.is_empty() {
        notes.push(format!(
            "config omits {}: {}'s defaults used (transformers {TRANSFORMERS_VERSION})",
            used.join(", "),
            class.name
        ));
    }
}
