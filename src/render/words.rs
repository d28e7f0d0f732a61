//! The builder every finding's words go through: a summary, evidence lines,
//! the numbers machines read, and what to do next.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Words {
    pub summary: String,
    pub evidence: Vec<String>,
    pub numbers: BTreeMap<&'static str, Value>,
    pub next: String,
}

impl Words {
    pub fn new(summary: impl Into<String>) -> Words {
        Words {
            summary: summary.into(),
            ..Words::default()
        }
    }
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }
    pub fn number(mut self, key: &'static str, v: impl Into<Value>) -> Self {
        self.numbers.insert(key, v.into());
        self
    }
    pub fn next(mut self, what: impl Into<String>) -> Self {
        self.next = what.into();
        self
    }
}

/// `model_mismatch`: what did not match, instead of findings built on a
/// model the reports do not look like.
pub fn model_mismatch(m: &crate::check::finding::ModelMismatch) -> Words {
    use crate::check::finding::Mismatch;
    let shape = if m.tp * m.pp > 1 {
        format!(" at tp {} pp {}", m.tp, m.pp)
    } else {
        String::new()
    };
    let mut reasons = Vec::new();
    let mut w = Words::new(String::new());
    for why in &m.why {
        match why {
            Mismatch::Weights {
                weights,
                expected,
                low,
                high,
                uncertain,
            } => {
                let ratio = weights.0 as f64 / expected.0.max(1) as f64;
                reasons.push(format!(
                    "the weights take {weights}, {ratio:.2}x the {expected} it needs per GPU"
                ));
                w = w
                    .number("weights_bytes", weights.0)
                    .number("expected_weights_bytes", expected.0)
                    .number("ratio", (ratio * 100.0).round() / 100.0)
                    .evidence(format!(
                        "weights (live before serving began, not KV cache) {weights}; {} needs {expected} per GPU{shape}; accepted: {low}x to {high}x{}",
                        m.model,
                        if *uncertain {
                            " (wider: quantised or multimodal, the figure is less sure)"
                        } else {
                            ""
                        }
                    ));
            }
            Mismatch::KvShape {
                tensors,
                tensor_bytes,
                layers,
                page,
                token_row,
            } => {
                reasons.push(format!(
                    "its preallocated KV cache ({tensors} tensors of {tensor_bytes}) is not made of the model's layers"
                ));
                w = w
                    .number("kv_tensors", *tensors)
                    .number("kv_tensor_bytes", tensor_bytes.0)
                    .evidence(format!(
                        "a preallocated cache of {tensors} equal tensors of {tensor_bytes}, made after the weights; {} has {layers} attention layers per GPU{shape}, a page of {page} (one tensor per layer, whole pages) and a token row of {token_row} (K and V per layer, whole rows): neither fits",
                        m.model
                    ));
            }
        }
    }
    w.summary = format!(
        "this does not look like {}{shape}: {}; the findings built on the model (weights, KV capacity) are left out",
        m.model,
        reasons.join("; ")
    );
    w.number("model", m.model.clone())
        .number("tp", m.tp)
        .number("pp", m.pp)
        .next("give the model the run served (--model: a preset or its config.json) and its --tp / --pp; without --model the check still reads memory by shape")
}
