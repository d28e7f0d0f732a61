//! Attention geometry: KV per token, windows, hybrid state, dtypes, stages.

use super::support::*;
use crate::kv::arch::LayerKind;
use crate::kv::cache::{self, Parallel, Share};
use crate::kv::dtype::Dtype;
use crate::kv::fit::{fit, FitInput};
use crate::kv::model::from_config;
use serde_json::json;

#[test]
fn per_token_kv_of_every_shared_model() {
    // (preset, tp, whole model, per GPU)
    let cases = [
        // 2 (K,V) x 32 layers x 32 KV heads x 128 x 2 B (fp16) = 524,288; tp 2: 16 heads per rank.
        ("llama-2-7b", 2, 524_288, 262_144),
        // 2 x 80 x 8 x 128 x 2 = 327,680 (GQA: the "2.5 MB per token" of 64 heads is 8x too high); tp 8: 1 head.
        ("llama-2-70b", 8, 327_680, 40_960),
        // 2 x 32 x 8 x 128 x 2 (bf16) = 131,072; tp 2: 4 heads per rank.
        ("llama-3.1-8b", 2, 131_072, 65_536),
        // 2 x 80 x 8 x 128 x 2 = 327,680; tp 8: one head per rank.
        ("llama-3.1-70b", 8, 327_680, 40_960),
        // 2 x 32 x 8 x 128 x 2 = 131,072 (no window cap per token); tp 4: 2 heads.
        ("mistral-7b-v0.1", 4, 131_072, 32_768),
        // 2 x 32 x 8 x 128 x 2 = 131,072; tp 8: 1 head.
        ("mixtral-8x7b-v0.1", 8, 131_072, 16_384),
        // 2 x 28 x 4 x 128 x 2 = 57,344; tp 2: 2 heads per rank.
        ("qwen2.5-7b-instruct", 2, 57_344, 28_672),
        // MLA: 27 layers x (512 + 64) x 2 B = 31,104, no factor 2; replicated on every rank.
        ("deepseek-v2-lite", 2, 31_104, 31_104),
    ];
    for (name, tp, whole, gpu) in cases {
        let m = preset(name);
        assert_eq!(token_bytes(&m, 1), (whole, whole), "{name} at tp 1");
        assert_eq!(token_bytes(&m, tp), (whole, gpu), "{name} at tp {tp}");
    }
}

#[test]
fn kv_heads_are_replicated_when_tp_exceeds_them() {
    // Llama-3.1-8B has 8 KV heads: at tp 16 each rank still holds one (2 x 32 x 1 x 128 x 2 = 16,384).
    assert_eq!(token_bytes(&preset("llama-3.1-8b"), 16).1, 16_384);
    // Qwen2.5-7B has 4 KV heads and 28 heads: tp 4 gives 1 head per rank (2 x 28 x 1 x 128 x 2).
    assert_eq!(token_bytes(&preset("qwen2.5-7b-instruct"), 4).1, 14_336);
}

#[test]
fn tp_that_divides_nothing_is_an_error() {
    let q = preset("qwen2.5-7b-instruct"); // 28 heads, 4 KV heads
    let e = Parallel { tp: 7, pp: 1 }.check(&q).unwrap_err();
    assert!(e.contains("--tp 7") && e.contains("neither way"), "{e}");
    let e = Parallel { tp: 3, pp: 1 }
        .check(&preset("llama-3.1-8b"))
        .unwrap_err();
    assert!(e.contains("does not divide the 32 attention heads"), "{e}");
    let e = Parallel { tp: 1, pp: 33 }
        .check(&preset("llama-3.1-8b"))
        .unwrap_err();
    assert!(e.contains("--pp 33"), "{e}");
    assert!(Parallel { tp: 0, pp: 1 }
        .check(&q)
        .unwrap_err()
        .contains("--tp"));
}

#[test]
fn explicit_head_dim_wins() {
    // hidden 2048 / 8 heads would be 256; head_dim says 128: 2 x 4 layers x 2 KV heads x 128 x 2 = 4,096.
    let m = synthetic(
        json!({"hidden_size": 2048, "num_attention_heads": 8, "num_key_value_heads": 2,
        "head_dim": 128, "num_hidden_layers": 4, "vocab_size": 1000, "torch_dtype": "bfloat16"}),
    );
    assert_eq!(token_bytes(&m, 1).0, 4096);
}

#[test]
fn falcon_multi_query_and_new_decoder_architecture() {
    // Falcon-7B: n_head 71, multi_query: 1 KV head of 4544/71 = 64: 2 x 32 x 1 x 64 x 2 = 8,192.
    let m = synthetic(
        json!({"model_type": "falcon", "hidden_size": 4544, "n_head": 71, "n_layer": 32,
        "multi_query": true, "vocab_size": 65024, "torch_dtype": "bfloat16"}),
    );
    assert_eq!((m.kv_heads, m.head_dim), (1, 64));
    assert_eq!(token_bytes(&m, 1).0, 8192);
    // Falcon-40B: new_decoder_architecture with num_kv_heads 8, head 8192/128 = 64: 2 x 60 x 8 x 64 x 2 = 122,880.
    let m = synthetic(
        json!({"model_type": "falcon", "hidden_size": 8192, "n_head": 128, "n_layer": 60,
        "new_decoder_architecture": true, "num_kv_heads": 8, "multi_query": true, "vocab_size": 65024,
        "torch_dtype": "bfloat16"}),
    );
    assert_eq!(token_bytes(&m, 1).0, 122_880);
}

#[test]
fn language_model_under_text_config() {
    // torch_dtype comes from the wrapper; geometry from text_config: 2 x 10 x 4 x 64 x 2 = 10,240.
    let m = synthetic(
        json!({"model_type": "llava", "torch_dtype": "float16", "vision_config": {"hidden_size": 1024},
        "text_config": {"model_type": "llama", "hidden_size": 1024, "num_attention_heads": 16,
            "num_key_value_heads": 4, "num_hidden_layers": 10, "vocab_size": 32000}}),
    );
    assert_eq!(m.dtype, Dtype::F16);
    assert_eq!(token_bytes(&m, 1).0, 10_240);
    assert!(m.notes.iter().any(|n| n.contains("text_config")));
}

#[test]
fn sliding_windows_everywhere_interleaved_or_off() {
    use LayerKind::*;
    // Mistral: a window on every layer.
    assert_eq!(
        synthetic(base(json!({"sliding_window": 4096}))).layers,
        vec![Sliding(4096); 6]
    );
    // Qwen2 with use_sliding_window false: no window at all.
    let m = synthetic(base(
        json!({"sliding_window": 4096, "use_sliding_window": false, "max_window_layers": 2}),
    ));
    assert_eq!(m.layers, vec![Full; 6]);
    // Qwen2 with it on: the first max_window_layers attend fully, the rest slide.
    let m = synthetic(base(
        json!({"sliding_window": 512, "use_sliding_window": true, "max_window_layers": 4}),
    ));
    assert_eq!(
        m.layers,
        vec![Full, Full, Full, Full, Sliding(512), Sliding(512)]
    );
    // layer_types names each layer.
    let m = synthetic(base(
        json!({"sliding_window": 128, "layer_types": ["sliding_attention", "full_attention",
        "sliding_attention", "full_attention", "sliding_attention", "full_attention"]}),
    ));
    assert_eq!(m.layers[..2], [Sliding(128), Full]);
    // sliding_window_pattern 3: every third layer (1-based) is global.
    let m = synthetic(base(
        json!({"sliding_window": 64, "sliding_window_pattern": 3}),
    ));
    assert_eq!(
        m.layers,
        vec![
            Sliding(64),
            Sliding(64),
            Full,
            Sliding(64),
            Sliding(64),
            Full
        ]
    );
    // Gemma 2's alternation is implicit in its model type: layer 0 slides, layer 1 is global.
    let m = synthetic(base(
        json!({"model_type": "gemma2", "sliding_window": 4096, "head_dim": 64}),
    ));
    assert_eq!(m.layers[..3], [Sliding(4096), Full, Sliding(4096)]);
    // Gemma 3: five sliding, then one global.
    let m = synthetic(base(
        json!({"model_type": "gemma3_text", "sliding_window": 1024}),
    ));
    assert_eq!(m.layers[4..6], [Sliding(1024), Full]);
    // A layer type without a window to go with it is an error naming the field.
    let e = from_config(
        "x",
        &base(json!({"layer_types": vec!["sliding_attention"; 6]})),
        None,
    )
    .unwrap_err();
    assert!(e.contains("sliding_window"), "{e}");
}

#[test]
fn requests_are_window_capped_and_rounded_to_blocks() {
    let m = preset("mistral-7b-v0.1");
    let s = Share::whole(&m);
    let per = 2 * 8 * 128 * 2; // bytes per token per layer
                               // 1000 tokens round up to 63 blocks of 16 = 1008 tokens, on 32 layers.
    assert_eq!(
        cache::per_request(&m, Dtype::BF16, &s, 1000, 16),
        1008 * per * 32
    );
    // 8192 tokens: the window keeps 4096 per layer (512 MiB, not 1 GiB).
    assert_eq!(
        cache::per_request(&m, Dtype::BF16, &s, 8192, 16),
        4096 * per * 32
    );
    assert_eq!(cache::per_request(&m, Dtype::BF16, &s, 8192, 16), 512 << 20);
    // A full-attention model holds all of it; block 32 rounds 1000 up to 1024.
    let l = preset("llama-3.1-8b");
    assert_eq!(
        cache::per_request(&l, Dtype::BF16, &Share::whole(&l), 1000, 32),
        1024 * 131_072
    );
}

#[test]
fn hybrid_models_hold_a_fixed_state_per_sequence() {
    // Jamba-style: attention on layer 4 of 8 (period 8, offset 4), Mamba elsewhere.
    let m = synthetic(
        json!({"model_type": "jamba", "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 8, "vocab_size": 100, "torch_dtype": "bfloat16",
        "attn_layer_period": 8, "attn_layer_offset": 4, "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2}),
    );
    assert_eq!(m.attention_layers(), 1);
    assert_eq!(m.layers[4], LayerKind::Full);
    // d_inner = 2 x 64 = 128: conv (4 - 1) x 128 = 384, SSM 128 x 16 = 2,048: 2,432 x 2 B x 7 layers = 34,048.
    assert_eq!(cache::state_per_sequence(&m, &Share::whole(&m)), 34_048);
    // KV only on the one attention layer: 2 x 1 x 2 x 16 x 2 = 128 per token.
    assert_eq!(token_bytes(&m, 1).0, 128);

    // Qwen3-Next-style: full attention every 4th layer, Gated DeltaNet otherwise.
    let m = synthetic(
        json!({"model_type": "qwen3_next", "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 8, "vocab_size": 100, "torch_dtype": "bfloat16",
        "full_attention_interval": 4, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
        "linear_key_head_dim": 8, "linear_value_head_dim": 8, "linear_conv_kernel_dim": 4}),
    );
    assert_eq!(
        m.layers.iter().filter(|k| **k == LayerKind::Full).count(),
        2
    );
    // conv (4 - 1) x (2 x 2 x 8 + 4 x 8) = 192, recurrent 4 x 8 x 8 = 256: 448 x 2 B x 6 layers = 5,376.
    assert_eq!(cache::state_per_sequence(&m, &Share::whole(&m)), 5_376);
    // Split across 2 ranks: 224 elements each.
    let half = Share {
        layers: 0..8,
        rank_of: Some(Parallel { tp: 2, pp: 1 }),
    };
    assert_eq!(cache::state_per_sequence(&m, &half), 2_688);

    // Mamba2 sizes: d_inner = 4 heads x 32 = 128, 1 group, d_state 16, conv 4:
    // conv (4 - 1) x (128 + 2 x 16) = 480, SSM 4 x 32 x 16 = 2,048: 2,528 x 2 B x 2 layers = 10,112.
    let m = synthetic(
        json!({"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, "vocab_size": 100,
        "torch_dtype": "bfloat16", "layer_types": ["mamba", "mamba", "full_attention"], "mamba_d_state": 16,
        "mamba_d_conv": 4, "mamba_n_groups": 1, "mamba_n_heads": 4, "mamba_d_head": 32}),
    );
    assert_eq!(cache::state_per_sequence(&m, &Share::whole(&m)), 10_112);
    // State layers need their sizes.
    let e = from_config("x", &base(json!({"layer_types": vec!["mamba"; 6]})), None).unwrap_err();
    assert!(e.contains("mamba_d_state"), "{e}");
}

#[test]
fn kv_dtype_from_torch_dtype_or_given() {
    // float32 checkpoints are served in 16 bits: 2 x 6 x 2 x 64 x 2 = 3,072.
    let m = synthetic(base(json!({"torch_dtype": "float32"})));
    assert_eq!(token_bytes(&m, 1).0, 3072);
    // fp8 KV: one byte.
    assert_eq!(cache::per_token(&m, Dtype::Fp8, &Share::whole(&m)), 1536);
    let f = fit(
        &preset("llama-3.1-8b"),
        &FitInput {
            context: 1024,
            kv_dtype: Some(Dtype::Fp8),
            ..FitInput::default()
        },
    )
    .unwrap();
    assert_eq!(f.kv_bytes_per_token, 65_536);
}

#[test]
fn pipeline_stages_split_layers_like_vllm() {
    let p = Parallel { tp: 1, pp: 3 };
    // 32 / 3 = 10 each; the 2 left over go to the second-to-last stages backwards.
    assert_eq!(p.stages(32), vec![0..11, 11..22, 22..32]);
    assert_eq!(
        Parallel { tp: 1, pp: 4 }.stages(30),
        vec![0..7, 7..15, 15..23, 23..30]
    );
    assert_eq!(Parallel { tp: 1, pp: 2 }.stages(80), vec![0..40, 40..80]);
    // The binding stage has the most layers: 11 x 2 x 8 x 128 x 2 = 45,056 per token.
    let f = fit(
        &preset("llama-3.1-8b"),
        &FitInput {
            context: 4096,
            par: p,
            gpus: 3,
            ..FitInput::default()
        },
    )
    .unwrap();
    assert_eq!(f.kv_bytes_per_token_per_gpu, 45_056);
}
