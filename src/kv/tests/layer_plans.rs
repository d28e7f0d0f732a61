//! Layer plans that follow the config: where the MoE blocks are, and the
//! norms each layer has. Arithmetic by hand in the comments.

use super::support::*;
use crate::kv::arch::LayerKind;
use serde_json::json;

#[test]
fn jamba_puts_experts_on_every_other_layer() {
    // JambaConfig's defaults are Jamba-v0.1: 32 layers, attention on i % 8 == 4,
    // MoE (16 experts of 3 x 4,096 x 14,336) on i % 2 == 1.
    let m = synthetic(json!({"model_type": "jamba", "torch_dtype": "bfloat16"}));
    assert_eq!(m.attention_layers(), 4);
    assert_eq!(m.layers[4], LayerKind::Full);
    let expert = 3 * 4096 * 14336u128;
    let l = &m.params.layers;
    // Layers 0 and 1 are both Mamba; 1 has 16 experts where 0 has one dense MLP.
    assert_eq!(l[1].linear - l[0].linear, 15 * expert);
    assert_eq!(l[3].linear, l[1].linear);
    assert_eq!(l[2].linear, l[0].linear);
    // Published: 52B ("51.6B" on the model page); the old all-layers count was 93.85B.
    let total = m.params.total() as f64;
    assert!((total / 51.6e9 - 1.0).abs() < 0.001, "{total}");
    // KV: 4 attention layers x 2 x 8 KV heads x 128 x 2 bytes.
    assert_eq!(token_bytes(&m, 1).0, 4 * 2 * 8 * 128 * 2);
    assert!(m.notes.iter().any(|n| n.contains("JambaConfig")));
}

#[test]
fn moe_placement_keys_are_followed() {
    let dense = 3 * 256 * 512u128;
    let moe = |extra: serde_json::Value| {
        let mut v = base(json!({"intermediate_size": 512, "moe_intermediate_size": 512}));
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        synthetic(v)
            .params
            .layers
            .iter()
            .map(|l| l.linear > dense + 4 * 256 * 256)
            .collect::<Vec<bool>>()
    };
    // Qwen-MoE: (i + 1) % decoder_sparse_step == 0, but not mlp_only_layers.
    assert_eq!(
        moe(json!({"num_experts": 4, "decoder_sparse_step": 2, "mlp_only_layers": [3]})),
        [false, true, false, false, false, true]
    );
    // DeepSeek: i >= first_k_dense_replace and i % moe_layer_freq == 0.
    assert_eq!(
        moe(json!({"n_routed_experts": 4, "first_k_dense_replace": 1, "moe_layer_freq": 2})),
        [false, false, true, false, true, false]
    );
    // Jamba: i % expert_layer_period == expert_layer_offset.
    assert_eq!(
        moe(json!({"num_experts": 4, "expert_layer_period": 3, "expert_layer_offset": 2})),
        [false, false, true, false, false, true]
    );
}

#[test]
fn norms_follow_the_architecture() {
    let per_layer = |extra: serde_json::Value| {
        let m = synthetic(base(extra));
        m.params.layers[0].other
    };
    let h = 256u128;
    // Llama-style: two RMSNorms of hidden.
    assert_eq!(per_layer(json!({"model_type": "llama"})), 2 * h);
    // Qwen3: plus q_norm and k_norm of head_dim each (given: Qwen3Config's default is 128).
    assert_eq!(
        per_layer(json!({"model_type": "qwen3", "head_dim": 64})),
        2 * h + 2 * 64
    );
    // Gemma 2: four norms.
    assert_eq!(per_layer(json!({"model_type": "gemma2"})), 4 * h);
    // Gemma 3: four norms and q/k norms.
    assert_eq!(
        per_layer(json!({"model_type": "gemma3_text", "head_dim": 64})),
        4 * h + 2 * 64
    );
    // Falcon-7B: parallel attention off one LayerNorm (weight and bias).
    assert_eq!(per_layer(json!({"model_type": "falcon"})), 2 * h);
    // Falcon without parallel attention: two LayerNorms.
    assert_eq!(
        per_layer(json!({"model_type": "falcon", "parallel_attn": false})),
        4 * h
    );
}

#[test]
fn kv_needs_no_vocab_size() {
    let mut v = base(json!({}));
    v.as_object_mut().unwrap().remove("vocab_size");
    let m = synthetic(v);
    // 6 layers x 2 x 2 KV heads x 64 x 2 bytes.
    assert_eq!(token_bytes(&m, 1).0, 6 * 2 * 2 * 64 * 2);
    assert_eq!(m.params.embed, 0);
    assert!(m.notes.iter().any(|n| n.contains("no vocab_size")));
}
