//! The feed-forward part of each decoder layer: a dense MLP (gated or GPT
//! style), or a mixture of experts, placed on the layers the config says
//! (Mixtral: all; DeepSeek: first_k_dense_replace and moe_layer_freq;
//! Qwen-MoE: decoder_sparse_step and mlp_only_layers; Jamba:
//! expert_layer_period and expert_layer_offset; Llama 4: moe_layers or
//! interleave_moe_layer_step, with a shared expert; GPT-OSS: biased experts
//! and router).

use super::arch::LayerParams;
use super::json::Obj;

/// Parameter arithmetic in u128, as in `params`.
type P = u128;

/// GPT-style MLPs: up and down, no gate.
const PLAIN_MLP: &[&str] = &[
    "falcon",
    "gpt2",
    "gpt_neox",
    "gptj",
    "gpt_bigcode",
    "opt",
    "bloom",
    "phi",
    "mpt",
    "starcoder2",
];
/// The feed-forward part of each layer.
pub struct Mlp {
    hidden: P,
    dense_inter: P,
    gated: bool,
    bias: bool,
    moe: Option<Moe>,
}

struct Moe {
    experts: P,
    inter: P,
    shared_inter: P,
    shared_gate: bool,
    /// Which layers are MoE.
    first_dense: P,
    every: P,
    /// The first MoE layer's index within each period of `every` (0-based steps).
    offset: P,
    dense_layers: Vec<P>,
    one_based_step: bool,
    /// The MoE layers, listed (Llama 4's moe_layers): the placement keys above do not apply.
    listed: Option<Vec<P>>,
    /// Biases on every expert's projections (GPT-OSS: gate_up 2 x inter, down hidden).
    expert_bias: bool,
    /// A bias on the router (GPT-OSS).
    router_bias: bool,
}

fn is_llama4(model_type: &str) -> bool {
    matches!(model_type, "llama4" | "llama4_text")
}

impl Mlp {
    pub fn from_config(c: &Obj, model_type: &str, h: P) -> Result<Mlp, String> {
        let expert_inter = c
            .opt_u64(&["intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim"])?
            .map(P::from)
            .unwrap_or(4 * h);
        // Llama 4: intermediate_size is an expert's, the dense layers' is intermediate_size_mlp.
        let dense_inter = match is_llama4(model_type) {
            true => c
                .opt_u64(&["intermediate_size_mlp"])?
                .map(P::from)
                .unwrap_or(expert_inter),
            false => expert_inter,
        };
        let gated = !PLAIN_MLP.contains(&model_type);
        let bias = c
            .bool("mlp_bias")
            .unwrap_or(!gated && model_type != "falcon");
        let moe = if let Some(e) = c.opt_u64(&["num_local_experts"])?.map(P::from) {
            // Mixtral, GPT-OSS: every layer, experts as large as intermediate_size.
            // Llama 4: every interleave_moe_layer_step-th layer (or those
            // listed in moe_layers), plus one shared expert of that size.
            let llama4 = is_llama4(model_type);
            let gpt_oss = model_type == "gpt_oss";
            Some(Moe {
                experts: e,
                inter: expert_inter,
                shared_inter: if llama4 { expert_inter } else { 0 },
                shared_gate: false,
                first_dense: 0,
                every: match llama4 {
                    true => c
                        .opt_u64(&["interleave_moe_layer_step"])?
                        .map(P::from)
                        .unwrap_or(1)
                        .max(1),
                    false => 1,
                },
                offset: 0,
                dense_layers: vec![],
                one_based_step: true,
                listed: c
                    .array("moe_layers")
                    .filter(|_| llama4)
                    .map(|a| a.iter().filter_map(|v| v.as_u64().map(P::from)).collect()),
                expert_bias: gpt_oss,
                router_bias: gpt_oss,
            })
        } else if let Some(e) = c.opt_u64(&["n_routed_experts"])?.map(P::from) {
            // DeepSeek: dense first layers, then MoE every moe_layer_freq, plus shared experts.
            let inter = P::from(c.req_u64(&["moe_intermediate_size"])?);
            let shared = c.opt_u64(&["n_shared_experts"])?.map(P::from).unwrap_or(0);
            Some(Moe {
                experts: e,
                inter,
                shared_inter: shared * inter,
                shared_gate: false,
                first_dense: c
                    .opt_u64(&["first_k_dense_replace"])?
                    .map(P::from)
                    .unwrap_or(0),
                every: c
                    .opt_u64(&["moe_layer_freq"])?
                    .map(P::from)
                    .unwrap_or(1)
                    .max(1),
                offset: 0,
                dense_layers: vec![],
                one_based_step: false,
                listed: None,
                expert_bias: false,
                router_bias: false,
            })
        } else if let Some(e) = c.opt_u64(&["num_experts"])?.map(P::from).filter(|&e| e > 0) {
            // Qwen2-MoE / Qwen3-MoE / OLMoE: MoE every decoder_sparse_step, but mlp_only_layers.
            let shared = c
                .opt_u64(&["shared_expert_intermediate_size"])?
                .map(P::from)
                .unwrap_or(0);
            // Jamba: MoE on layers i with i % expert_layer_period == expert_layer_offset.
            let jamba = c.opt_u64(&["expert_layer_period"])?.map(P::from);
            Some(Moe {
                experts: e,
                inter: c
                    .opt_u64(&["moe_intermediate_size"])?
                    .map(P::from)
                    .unwrap_or(dense_inter),
                shared_inter: shared,
                shared_gate: shared > 0,
                first_dense: 0,
                every: match jamba {
                    Some(p) => p,
                    None => c
                        .opt_u64(&["decoder_sparse_step"])?
                        .map(P::from)
                        .unwrap_or(1),
                }
                .max(1),
                offset: match jamba {
                    Some(_) => c
                        .opt_u64(&["expert_layer_offset"])?
                        .map(P::from)
                        .unwrap_or(0),
                    None => 0,
                },
                dense_layers: c
                    .array("mlp_only_layers")
                    .map(|a| a.iter().filter_map(|v| v.as_u64().map(P::from)).collect())
                    .unwrap_or_default(),
                one_based_step: jamba.is_none(),
                listed: None,
                expert_bias: false,
                router_bias: false,
            })
        } else {
            None
        };
        Ok(Mlp {
            hidden: h,
            dense_inter,
            gated,
            bias,
            moe,
        })
    }

    pub fn token_inter(&self, c: &Obj) -> Result<P, String> {
        Ok(match &self.moe {
            Some(m) => {
                c.opt_u64(&["num_experts_per_tok", "moe_topk"])?
                    .map(P::from)
                    .unwrap_or(2)
                    * m.inter
                    + m.shared_inter
            }
            None => self.dense_inter,
        }
        .max(self.dense_inter))
    }

    fn ffn(&self, inter: P) -> P {
        (if self.gated { 3 } else { 2 }) * self.hidden * inter
    }

    pub fn layer(&self, i: P) -> LayerParams {
        let bias = |inter: P| {
            if self.bias {
                (if self.gated { 2 } else { 1 }) * inter + self.hidden
            } else {
                0
            }
        };
        let moe = self.moe.as_ref().filter(|m| {
            if let Some(listed) = &m.listed {
                return listed.contains(&i);
            }
            let step = if m.one_based_step {
                (i + 1).is_multiple_of(m.every)
            } else {
                i % m.every == m.offset % m.every
            };
            i >= m.first_dense && step && !m.dense_layers.contains(&i)
        });
        match moe {
            Some(m) => LayerParams {
                linear: m.experts * self.ffn(m.inter) + self.ffn(m.shared_inter),
                other: self.hidden * m.experts
                    + if m.shared_gate { self.hidden } else { 0 }
                    + if m.router_bias { m.experts } else { 0 }
                    + if m.expert_bias {
                        m.experts * (2 * m.inter + self.hidden)
                    } else {
                        0
                    },
            },
            None => LayerParams {
                linear: self.ffn(self.dense_inter),
                other: bias(self.dense_inter),
            },
        }
    }
}
