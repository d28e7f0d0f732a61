//! Models for the tests: presets, synthetic configs, per-token KV.

use crate::kv::cache::{self, Parallel, Share};
use crate::kv::model::{from_config, Model};
use crate::kv::source;
use serde_json::json;

pub fn preset(name: &str) -> Model {
    source::preset(name).unwrap_or_else(|| panic!("preset {name}"))
}

pub fn synthetic(v: serde_json::Value) -> Model {
    from_config("synthetic", &v, None).unwrap()
}

pub fn token_bytes(m: &Model, tp: u64) -> (u64, u64) {
    let kv = m.dtype.served();
    let whole = cache::per_token(m, kv, &Share::whole(m));
    let par = Parallel { tp, pp: 1 };
    par.check(m).unwrap();
    let gpu = cache::per_token(
        m,
        kv,
        &Share {
            layers: 0..m.layers.len(),
            rank_of: Some(par),
        },
    );
    (whole, gpu)
}

pub fn base(extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 6, "vocab_size": 1000, "torch_dtype": "bfloat16"});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
}

/// A public config from `configs/`, read as kvscope reads it.
pub fn load(name: &str, text: &str) -> Model {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    from_config(name, &v, None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A corpus entry: KV bytes per token by hand, and the published parameter
/// count with the tolerance its rounding allows (a fraction of it).
pub struct Case {
    pub file: &'static str,
    pub text: &'static str,
    pub kv: u64,
    pub published: u64,
    pub tolerance: f64,
}

/// Checks every case: KV exactly, parameters within the tolerance.
pub fn check(cases: &[Case]) {
    for c in cases {
        let m = load(c.file, c.text);
        assert_eq!(token_bytes(&m, 1).0, c.kv, "{}: KV bytes per token", c.file);
        let got = m.params.total();
        let err = (got as f64 - c.published as f64).abs() / c.published as f64;
        assert!(
            err <= c.tolerance,
            "{}: {got} parameters vs published {} ({:.3}%)",
            c.file,
            c.published,
            err * 100.0
        );
    }
}
