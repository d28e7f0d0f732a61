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
