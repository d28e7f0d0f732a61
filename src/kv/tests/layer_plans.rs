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

#[test]
fn command_r_runs_attention_and_mlp_off_one_norm() {
    // CohereConfig's defaults are c4ai-command-r-v01's: 40 layers, 64 heads of
    // 128, all KV heads (64), MLP 22,528, vocabulary 256,000, tied embeddings.
    let m = synthetic(json!({"model_type": "cohere", "torch_dtype": "float16"}));
    let h = 8192u128;
    // Per layer: q, k, v, o of 8,192 x 8,192, the gated MLP, one LayerNorm
    // (weights only: Cohere's LayerNorm has no bias).
    let layer = 4 * h * h + 3 * h * 22528 + h;
    assert!(m.params.layers.iter().all(|l| l.linear + l.other == layer));
    assert_eq!(m.params.lm_head, 0, "tied by CohereConfig's default");
    // Published: 34.981B, the Open LLM Leaderboard's count of the checkpoint
    // (its request files for CohereForAI/c4ai-command-r-v01), to 0.0005B.
    let total = m.params.total_exact();
    assert_eq!(total, 256_000 * h + 40 * layer + h);
    assert!(
        (total as f64 / 34.981e9 - 1.0).abs() < 0.0005 / 34.981,
        "{total}"
    );
    // KV: 40 x 2 x 64 x 128 x 2 bytes.
    assert_eq!(token_bytes(&m, 1).0, 40 * 2 * 64 * 128 * 2);
    assert!(m.notes.iter().any(|n| n.contains("CohereConfig")));
    // Command R+ (the fields of c4ai-command-r-plus's config.json): 64 layers of
    // 12,288, 96 heads and 8 KV heads of 128, MLP 33,792, and per-head q and k
    // LayerNorms (use_qk_norm). Published: "104B" (to 0.5B).
    let plus = synthetic(json!({"model_type": "cohere", "hidden_size": 12288,
        "intermediate_size": 33792, "num_hidden_layers": 64, "num_attention_heads": 96,
        "num_key_value_heads": 8, "use_qk_norm": true, "vocab_size": 256000,
        "torch_dtype": "float16"}));
    let h = 12288u128;
    let layer = 2 * h * h + 2 * h * 1024 + 3 * h * 33792 + h + (96 + 8) * 128;
    assert_eq!(plus.params.total_exact(), 256_000 * h + 64 * layer + h);
    let total = plus.params.total() as f64;
    assert!((total / 104e9 - 1.0).abs() < 0.5 / 104.0, "{total}");
    assert_eq!(token_bytes(&plus, 1).0, 64 * 2 * 8 * 128 * 2);
}

#[test]
fn hybrid_layer_lists_are_followed() {
    let mamba = json!({"mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2});
    let with = |extra: serde_json::Value| {
        let mut v = base(mamba.clone());
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        synthetic(v).layers
    };
    let (a, s) = (LayerKind::Full, LayerKind::State);
    // layers_block_type, as layer_types.
    assert_eq!(
        with(json!({"layers_block_type":
            ["mamba", "mamba", "attention", "mamba", "mamba", "attention"]})),
        [s, s, a, s, s, a]
    );
    // attn_layer_indices (Bamba): the attention layers, Mamba elsewhere.
    assert_eq!(
        with(json!({"attn_layer_indices": [1, 4]})),
        [s, a, s, s, a, s]
    );
    // A layer index past the last layer is refused, naming the field.
    let mut bad = base(mamba.clone());
    bad["attn_layer_indices"] = json!([6]);
    let err = crate::kv::model::from_config("bad", &bad, None).unwrap_err();
    assert!(err.contains("attn_layer_indices"), "{err}");
    // KV only on the attention layers: 2 x 2 x 2 KV heads x 64 x 2 bytes.
    let mut v = base(mamba);
    v["attn_layer_indices"] = json!([1, 4]);
    assert_eq!(token_bytes(&synthetic(v), 1).0, 2 * 2 * 2 * 64 * 2);
}

#[test]
fn qwen2_moe_has_a_gated_shared_expert_and_qkv_biases() {
    // Qwen2MoeConfig's defaults are Qwen1.5-MoE-A2.7B's: 24 layers of 2,048, 16
    // heads (all KV), 60 experts of 1,408 and a shared expert of 5,632 with its
    // gate on every layer, q/k/v biases, untied embeddings of 151,936.
    let m = synthetic(json!({"model_type": "qwen2_moe", "torch_dtype": "bfloat16"}));
    let h = 2048u128;
    let attn = 4 * h * h + 3 * h;
    let moe = 60 * 3 * h * 1408 + 3 * h * 5632 + 60 * h + h;
    let layer = attn + moe + 2 * h;
    assert!(m.params.layers.iter().all(|l| l.linear + l.other == layer));
    let total = m.params.total_exact();
    assert_eq!(total, 2 * 151_936 * h + 24 * layer + h);
    // Published: "14.3B" in total (to 0.05B).
    assert!((total as f64 / 14.3e9 - 1.0).abs() < 0.05 / 14.3, "{total}");
    // KV: 24 x 2 x 16 x 128 x 2 bytes.
    assert_eq!(token_bytes(&m, 1).0, 24 * 2 * 16 * 128 * 2);
    assert!(m.notes.iter().any(|n| n.contains("Qwen2MoeConfig")));
}

#[test]
fn deepseek_v2_and_granite_take_their_class_defaults() {
    // DeepseekV2Config (4.57.0): 32 layers, kv_lora_rank 512 + qk_rope_head_dim
    // 64 per layer, one latent (no factor 2), bf16: 32 x 576 x 2 bytes.
    let m = synthetic(
        json!({"model_type": "deepseek_v2", "torch_dtype": "bfloat16",
        "num_experts_per_tok": 6}),
    );
    assert_eq!(token_bytes(&m, 1).0, 32 * 576 * 2);
    assert!(m.notes.iter().any(|n| n.contains("DeepseekV2Config")));
    // GraniteConfig (4.57.0): Llama's shape, 32 layers of 32 heads of 4,096 / 32
    // = 128, no GQA (num_key_value_heads defaults to the heads): 32 x 2 x 32 x 128 x 2.
    let g = synthetic(json!({"model_type": "granite", "torch_dtype": "bfloat16"}));
    assert_eq!(token_bytes(&g, 1).0, 32 * 2 * 32 * 128 * 2);
    assert!(g.notes.iter().any(|n| n.contains("GraniteConfig")));
}
