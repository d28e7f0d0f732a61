//! Weights from config.json, and configs refused with the field named.

use super::support::*;
use crate::kv::dtype::Dtype;
use crate::kv::fit::{fit, FitInput};
use crate::kv::model::from_config;
use crate::kv::source;
use serde_json::json;

#[test]
fn weights_match_published_parameter_counts() {
    // Totals to 1%. Sources: keras-hub (keras-team/keras-hub at 71453d08, the
    // presets' `params`: llama2_7b_en, llama3.1_8b, mistral_7b_en,
    // mixtral_8_7b_en); the model cards' rounded figures (Llama 3.1 70B "70B",
    // Qwen2.5-7B "7.61B", DeepSeek-V2-Lite "15.7B"); Llama 2 70B by hand (no
    // exact public count found): 2 x 32,000 x 8,192 + 80 x (2 x 8,192^2 +
    // 2 x 8,192 x 1,024 + 3 x 8,192 x 28,672 + 2 x 8,192) + 8,192.
    let cases = [
        ("llama-2-7b", 6_738_415_616u64),
        ("llama-2-70b", 68_976_648_192),
        ("llama-3.1-8b", 8_030_261_248),
        ("llama-3.1-70b", 70_000_000_000),
        ("mistral-7b-v0.1", 7_241_732_096),
        ("mixtral-8x7b-v0.1", 46_702_792_704),
        ("qwen2.5-7b-instruct", 7_610_000_000),
        ("deepseek-v2-lite", 15_700_000_000),
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

/// Geometry no model has is refused with the field named (issue 12): more KV
/// heads than attention heads, KV heads that do not divide them, a bit width
/// no quantizer stores, a context of no tokens.
#[test]
fn impossible_geometry_is_refused_with_the_field_named() {
    let refused = |extra: serde_json::Value, field: &str| {
        let e = from_config("synthetic", &base(extra.clone()), None)
            .err()
            .unwrap_or_else(|| panic!("{extra} was accepted"));
        assert!(e.contains(field), "{extra}: {e}");
    };
    refused(
        json!({"num_attention_heads": 32, "hidden_size": 4096, "num_key_value_heads": 64}),
        "num_key_value_heads",
    );
    refused(
        json!({"num_attention_heads": 32, "hidden_size": 4096, "num_key_value_heads": 5}),
        "num_key_value_heads",
    );
    refused(
        json!({"quantization_config": {"quant_method": "awq", "bits": 0, "group_size": 128}}),
        "quantization_config.bits",
    );
    refused(
        json!({"quantization_config": {"quant_method": "gptq", "bits": 64}}),
        "quantization_config.bits",
    );
    refused(
        json!({"max_position_embeddings": 0}),
        "max_position_embeddings",
    );
    // What real models have stays accepted: GQA, MQA, MHA, 4-bit AWQ.
    for ok in [
        json!({"num_key_value_heads": 1}),
        json!({"num_key_value_heads": 4}),
        json!({"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}),
        json!({"max_position_embeddings": 4096}),
    ] {
        assert!(
            from_config("synthetic", &base(ok.clone()), None).is_ok(),
            "{ok}"
        );
    }
}
