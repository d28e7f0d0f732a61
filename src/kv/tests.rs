//! The KV model against figures derived by hand (the arithmetic is in the
//! comments), and against the published parameter counts of the shared models.

use super::cache::{self, Parallel, Share};
use super::dtype::Dtype;
use super::fit::{fit, FitInput};
use super::model::{from_config, LayerKind, Model};
use super::source;
use serde_json::json;

fn preset(name: &str) -> Model {
    source::preset(name).unwrap_or_else(|| panic!("preset {name}"))
}

fn synthetic(v: serde_json::Value) -> Model {
    from_config("synthetic", &v, None).unwrap()
}

fn token_bytes(m: &Model, tp: u64) -> (u64, u64) {
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

fn base(extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
        "num_hidden_layers": 6, "vocab_size": 1000, "torch_dtype": "bfloat16"});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    v
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

#[test]
fn weights_match_published_parameter_counts() {
    // Published totals (Hugging Face model cards / safetensors metadata).
    let cases = [
        ("llama-2-7b", 6_738_415_616u64),
        ("llama-2-70b", 68_976_648_192),
        ("llama-3.1-8b", 8_030_261_248),
        ("llama-3.1-70b", 70_553_706_496),
        ("mistral-7b-v0.1", 7_241_732_096),
        ("mixtral-8x7b-v0.1", 46_702_792_704),
        ("qwen2.5-7b-instruct", 7_615_616_512),
        ("deepseek-v2-lite", 15_706_484_224),
    ];
    for (name, published) in cases {
        let got = preset(name).params.total();
        let err = (got as f64 - published as f64).abs() / published as f64;
        assert!(
            err < 0.01,
            "{name}: {got} vs published {published} ({:.2}%)",
            err * 100.0
        );
    }
    // Llama-3.1-8B by hand: embedding and LM head 128,256 x 4,096 each; per layer q and o
    // 4,096^2, k and v 4,096 x 1,024, MLP 3 x 4,096 x 14,336, two norms; a final norm.
    let per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096;
    assert_eq!(
        preset("llama-3.1-8b").params.total(),
        2 * 128_256 * 4096 + 32 * per_layer + 4096
    );
    // bf16: two bytes each.
    assert_eq!(
        preset("llama-3.1-8b").params.bytes(Dtype::BF16),
        2 * 8_030_261_248
    );
}

#[test]
fn quantization_config_sets_the_linear_weight_format() {
    let fp8 = synthetic(base(
        json!({"quantization_config": {"quant_method": "fp8"}}),
    ));
    let plain = synthetic(base(json!({})));
    let linear = plain.params.linear();
    // Linear weights drop from 2 bytes to 1; embeddings, norms and the head stay bf16.
    assert_eq!(
        plain.params.bytes(Dtype::BF16) - fp8.params.bytes(Dtype::BF16),
        linear
    );
    let awq = synthetic(base(
        json!({"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}),
    ));
    // 4 bits plus an fp16 scale and a 4-bit zero per 128 weights: 0.5 + 2.5 / 128 bytes each.
    let want =
        (linear as f64 * (0.5 + 2.5 / 128.0)).ceil() as u64 + (plain.params.total() - linear) * 2;
    assert_eq!(awq.params.bytes(Dtype::BF16), want);
    let odd = synthetic(base(
        json!({"quantization_config": {"quant_method": "exotic"}}),
    ));
    assert!(odd.notes.iter().any(|n| n.contains("exotic")));
}

#[test]
fn a_safetensors_index_beside_the_config_gives_the_weights() {
    let dir = std::env::temp_dir().join(format!("kvscope-kv-index-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), source::PRESETS[2].1).unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata": {"total_size": 16060522496}, "weight_map": {}}"#,
    )
    .unwrap();
    let m = source::load(dir.to_str().unwrap()).unwrap();
    let f = fit(
        &m,
        &FitInput {
            context: 1024,
            ..FitInput::default()
        },
    )
    .unwrap();
    assert_eq!(
        (f.weights_bytes, f.weights_source.as_str()),
        (16_060_522_496, "safetensors index")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_budget_adds_up() {
    let m = preset("llama-3.1-8b");
    let f = fit(
        &m,
        &FitInput {
            context: 8192,
            concurrency: 16,
            activation: Some(1 << 30),
            ..FitInput::default()
        },
    )
    .unwrap();
    let weights = 2 * 8_030_261_248i64;
    // 80 GiB x 0.9 - weights - 1 GiB activations - 512 MiB non-torch.
    let avail = (80.0 * 1073741824.0 * 0.9) as i64 - weights - (1 << 30) - (512 << 20);
    assert_eq!(f.available_bytes_per_gpu, avail);
    // 16 requests x 8,192 tokens x 128 KiB.
    assert_eq!(f.kv_needed_bytes_per_gpu, 16 << 30);
    assert_eq!(f.headroom_bytes_per_gpu, avail - (16 << 30));
    assert!(f.will_fit);
    assert_eq!(f.max_concurrency, avail as u64 / (1 << 30));
    // Longest context for 16 requests: the budget over 16 x 128 KiB, down to a whole block.
    assert_eq!(f.max_context, (avail as u64 / 16 / 131_072) / 16 * 16);
    // Simple audit: 80 GiB - weights - 512 MiB - 4 GiB (5%).
    assert_eq!(
        f.budget.audit_available_bytes_per_gpu,
        (80i64 << 30) - weights - (512 << 20) - (4 << 30)
    );
    // All of a sliding-window model's requests fit up to the model's limit.
    let f = fit(
        &preset("mistral-7b-v0.1"),
        &FitInput {
            context: 8192,
            concurrency: 4,
            ..FitInput::default()
        },
    )
    .unwrap();
    assert_eq!(
        (f.max_context, f.max_context_limited_by.as_str()),
        (32_768, "model")
    );
}

#[test]
fn data_parallel_replicas_share_the_requests() {
    let m = preset("llama-3.1-8b");
    let one = fit(
        &m,
        &FitInput {
            context: 8192,
            concurrency: 10,
            gpus: 1,
            ..FitInput::default()
        },
    )
    .unwrap();
    let two = fit(
        &m,
        &FitInput {
            context: 8192,
            concurrency: 10,
            gpus: 2,
            ..FitInput::default()
        },
    )
    .unwrap();
    assert_eq!(two.replicas, 2);
    assert_eq!(two.kv_needed_bytes_per_gpu * 2, one.kv_needed_bytes_per_gpu);
    assert_eq!(two.max_concurrency, 2 * one.max_concurrency);
    let e = fit(
        &m,
        &FitInput {
            context: 8192,
            gpus: 3,
            par: Parallel { tp: 2, pp: 1 },
            ..FitInput::default()
        },
    )
    .unwrap_err();
    assert!(e.contains("--gpus 3"), "{e}");
}

#[test]
fn bad_configs_name_the_field() {
    let missing = from_config(
        "x",
        &json!({"hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10}),
        None,
    )
    .unwrap_err();
    assert!(missing.contains("missing num_hidden_layers"), "{missing}");
    let bad = from_config("x", &base(json!({"num_key_value_heads": "eight"})), None).unwrap_err();
    assert!(bad.contains("num_key_value_heads"), "{bad}");
    let indivisible = from_config("x", &json!({"hidden_size": 100, "num_attention_heads": 3, "num_hidden_layers": 2, "vocab_size": 10}), None).unwrap_err();
    assert!(indivisible.contains("head_dim"), "{indivisible}");
    assert!(from_config("x", &json!([1, 2]), None)
        .unwrap_err()
        .contains("not a JSON object"));
    assert!(source::load("no-such-model")
        .unwrap_err()
        .contains("no such file or preset"));
    for (inp, flag) in [
        (
            FitInput {
                context: 0,
                ..FitInput::default()
            },
            "--context",
        ),
        (
            FitInput {
                context: 1,
                concurrency: 0,
                ..FitInput::default()
            },
            "--concurrency",
        ),
        (
            FitInput {
                context: 1,
                gpu_mem: 0,
                ..FitInput::default()
            },
            "--gpu-mem",
        ),
        (
            FitInput {
                context: 1,
                gpu_util: 1.5,
                ..FitInput::default()
            },
            "--gpu-util",
        ),
        (
            FitInput {
                context: 1,
                block: 0,
                ..FitInput::default()
            },
            "--block-size",
        ),
    ] {
        assert!(
            fit(&preset("llama-3.1-8b"), &inp)
                .unwrap_err()
                .contains(flag),
            "{flag}"
        );
    }
}
