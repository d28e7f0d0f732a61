//! Llama 4: chunked attention on three layers of four, MoE every
//! interleave_moe_layer_step-th layer with a shared expert, dense layers of
//! intermediate_size_mlp.
//!
//! Sources (repository, path, commit; sha256 of the file as copied): the
//! Hub's config.json as ai-dynamo/aiconfigurator stores it, which keeps the
//! text_config and leaves out the vision_config (the vision tower is counted
//! by hand below):
//! - llama-4-scout-17b-16e-instruct.json: ai-dynamo/aiconfigurator,
//!   aic-core/src/aiconfigurator_core/model_configs/meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json,
//!   095f58a51c4ca8e61b66ec108d86f223f8d559ce; b58ddb5d31b8eeae5e86ce0eabdbf9108c7dcb51b86b986e4880c6b67e8a324f
//! - llama-4-maverick-17b-128e-instruct.json: same repository and commit,
//!   .../meta-llama--Llama-4-Maverick-17B-128E-Instruct_config.json;
//!   167a90dd62f5a59412ee6661b223a70822ff592806042f9c56897f869e482afc

use super::support::{check, load, token_bytes, Case};
use crate::kv::arch::LayerKind;

/// Llama 4's vision tower and projector (Llama4VisionConfig of both
/// checkpoints: 34 layers of width 1,408, MLP 5,632, 336-pixel images in
/// 14-pixel patches, a 4,096-wide pixel-shuffle MLP), which the published
/// totals include and kvscope, modelling the language model, does not.
const VISION: u64 = {
    let h = 1408;
    let patch = 3 * 14 * 14 * h; // unfold convolution, no bias
    let embeddings = h + (24 * 24 + 1) * h; // class embedding, positions
    let pre_post_norms = 2 * 2 * h; // LayerNorms with biases
    let attn = 4 * (h * h + h); // q, k, v, o with biases
    let mlp = (h * 5632 + 5632) + (5632 * h + h);
    let layer = attn + mlp + 2 * 2 * h;
    let adapter = 5632 * 4096 + 4096 * 4096; // pixel-shuffle MLP, no biases
    let projector = 4096 * 5120; // into the language model's width
    patch + embeddings + pre_post_norms + 34 * layer + adapter + projector
};

#[test]
fn llama_4_gives_hand_kv_and_published_parameters() {
    check(&[
        // Scout: 48 layers x 2 x 8 KV heads x 128 x 2 bytes (before the
        // 8,192-token chunks of 36 of them). Published: "109B total" (Meta's
        // announcement, as IBM's watsonx announcement of the two models quotes it:
        // ibm.com/new/announcements/Meta-llama-4-maverick-and-llama-4-scout-now-available-in-watsonx-ai),
        // vision tower included, to 0.5B: the language model is that less VISION.
        case!(
            "llama-4-scout-17b-16e-instruct.json",
            48 * 2 * 8 * 128 * 2,
            109_000_000_000 - VISION,
            0.5 / 108.1
        ),
        // Maverick: the same attention. Published: 401,583,781,376, the
        // parameter_count of Llama 4 Maverick in the sample row of Fireworks AI's
        // docs.fireworks.ai/accounts/exporting-billing-metrics (exact), vision tower
        // included; Meta's announcement says "400B total".
        case!(
            "llama-4-maverick-17b-128e-instruct.json",
            48 * 2 * 8 * 128 * 2,
            401_583_781_376 - VISION,
            0.0
        ),
    ]);
    assert_eq!(VISION, 871_932_416);
}

#[test]
fn llama_4_chunks_three_layers_of_four() {
    let (file, text) = config!("llama-4-scout-17b-16e-instruct.json");
    let m = load(file, text);
    // No no_rope_layers in the config: every 4th layer (no_rope_layer_interval,
    // a class default, noted) is NoPE and attends fully, the others in chunks.
    for (i, k) in m.layers.iter().enumerate() {
        let want = if (i + 1) % 4 == 0 {
            LayerKind::Full
        } else {
            LayerKind::Sliding(8192)
        };
        assert_eq!(*k, want, "layer {i}");
    }
    assert!(m
        .notes
        .iter()
        .any(|n| n.contains("text_config.no_rope_layer_interval 4")));
}

#[test]
fn llama_4_places_experts_by_interleave_step() {
    let (h, e, mlp) = (5120u128, 8192u128, 16384u128);
    let ffn = |inter: u128| 3 * h * inter;
    // Maverick: interleave_moe_layer_step 2, MoE on layers 1, 3, ...: 128 routed
    // experts plus a shared one, and a router; the others a dense MLP of 16,384.
    let (file, text) = config!("llama-4-maverick-17b-128e-instruct.json");
    let m = load(file, text);
    let l = &m.params.layers;
    let attn = l[0].linear - ffn(mlp);
    assert_eq!(attn, 2 * h * (40 * 128) + 2 * h * (8 * 128));
    assert_eq!(l[1].linear, attn + 128 * ffn(e) + ffn(e));
    assert_eq!(l[1].other - l[0].other, 128 * h);
    assert_eq!(l[2].linear, l[0].linear);
    // Scout: step 1, every layer MoE with 16 experts.
    let (file, text) = config!("llama-4-scout-17b-16e-instruct.json");
    let s = load(file, text);
    assert!(s
        .params
        .layers
        .iter()
        .all(|l| l.linear == attn + 16 * ffn(e) + ffn(e)));
    // A moe_layers list overrides the step.
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut v = v;
    v["text_config"]["moe_layers"] = serde_json::json!([0, 47]);
    let listed = crate::kv::model::from_config("listed", &v, None).unwrap();
    let moe: Vec<usize> = (0..48)
        .filter(|&i| listed.params.layers[i].linear > attn + ffn(mlp))
        .collect();
    assert_eq!(moe, [0, 47]);
    assert_eq!(token_bytes(&listed, 1).0, 48 * 2 * 8 * 128 * 2);
}
