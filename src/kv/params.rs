//! Parameter counts from config.json, per layer, and the bytes they take.
//!
//! Decoder layers: attention projections (with MLA's low-rank projections),
//! the MLP (gated SwiGLU, or two matrices for GPT-style models; MoE with
//! routed and shared experts and dense-first layers), Mamba / linear-attention
//! mixers for state layers, norms and biases. Plus the embedding and, unless
//! tied, the LM head. "Linear" parameters are the ones a quantization_config
//! changes; norms, biases, routers, embeddings and the LM head keep the
//! model's dtype.

pub use super::arch::LayerParams;
use super::arch::{LayerKind, Mla};
use super::dtype::Dtype;
use super::ffn::Mlp;
use super::json::Obj;
use super::quant::{quant, Quant};
use std::ops::Range;

/// Parameter arithmetic: config integers are at most 2^32 (json.rs), so
/// products of four and sums over layers stay far inside u128.
type P = u128;

fn sat(x: P) -> u64 {
    u64::try_from(x).unwrap_or(u64::MAX)
}

#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub vocab: u64,
    /// The widest MLP intermediate one token goes through (top-k experts for MoE).
    pub token_inter: u64,
    pub embed: P,
    pub lm_head: P,
    pub final_norm: P,
    pub layers: Vec<LayerParams>,
    pub quant: Option<Quant>,
}

/// Models with LayerNorm (weight and bias) rather than RMSNorm.
const LAYER_NORM: &[&str] = &[
    "falcon",
    "gpt2",
    "gpt_neox",
    "gptj",
    "gpt_bigcode",
    "opt",
    "bloom",
    "phi",
    "starcoder2",
];
/// Models whose config class ties the LM head to the embedding by default.
const TIED_BY_DEFAULT: &[&str] = &[
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "falcon",
    "gpt2",
    "opt",
    "bloom",
    "qwen3",
    "cohere",
    "cohere2",
];

impl ParamSpec {
    /// All parameters (exact below 2^64; model.rs rejects configs beyond 2^50).
    pub fn total(&self) -> u64 {
        sat(self.total_exact())
    }

    pub fn total_exact(&self) -> P {
        self.embed
            + self.lm_head
            + self.final_norm
            + self.layers.iter().map(|l| l.linear + l.other).sum::<P>()
    }

    /// Linear parameters of all layers (the ones a quantization changes).
    #[cfg(test)]
    pub fn linear(&self) -> u64 {
        sat(self.layers.iter().map(|l| l.linear).sum())
    }

    fn linear_bytes(&self, linear: P, dtype: Dtype) -> P {
        match &self.quant {
            Some(q) => (linear as f64 * q.bytes_per_param).ceil() as P,
            None => linear * dtype.bytes() as P,
        }
    }

    /// Bytes of the whole model at `dtype` (linear layers as quantized).
    pub fn bytes(&self, dtype: Dtype) -> u64 {
        self.stage_bytes(dtype, 0..self.layers.len(), true, true)
    }

    /// Bytes of a pipeline stage: its layers, plus the embedding on the first
    /// stage and the LM head (or the tied embedding) on the last.
    pub fn stage_bytes(&self, dtype: Dtype, layers: Range<usize>, first: bool, last: bool) -> u64 {
        let ls = &self.layers[layers];
        let linear: P = ls.iter().map(|l| l.linear).sum();
        let mut other: P = ls.iter().map(|l| l.other).sum();
        if first {
            other += self.embed;
        }
        if last {
            other += self.final_norm
                + if self.lm_head > 0 {
                    self.lm_head
                } else if !first {
                    self.embed
                } else {
                    0
                };
        }
        sat(self.linear_bytes(linear, dtype) + other * dtype.bytes() as P)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn from_config(
        c: &Obj,
        model_type: &str,
        hidden: u64,
        heads: u64,
        kv_heads: u64,
        head_dim: u64,
        mla: Option<Mla>,
        kinds: &[LayerKind],
        notes: &mut Vec<String>,
    ) -> Result<ParamSpec, String> {
        let (hidden, heads, kv_heads, head_dim) =
            (hidden as P, heads as P, kv_heads as P, head_dim as P);
        // The KV figures never need the vocabulary: without one, the weights
        // leave out the embedding and LM head, and say so.
        let vocab = match c.opt_u64(&["vocab_size", "padded_vocab_size"])? {
            Some(v) => v as P,
            None => {
                notes.push(
                    "config has no vocab_size (nor a config-class default): the weights leave out the embedding and LM head".into(),
                );
                0
            }
        };
        let tied = c
            .bool("tie_word_embeddings")
            .unwrap_or_else(|| TIED_BY_DEFAULT.contains(&model_type));
        let layer_norm = LAYER_NORM.contains(&model_type);
        let norm = if layer_norm { 2 * hidden } else { hidden };
        let layer_norms = norms_per_layer(c, model_type) as P * norm;
        let qk_norm = qk_norm(c, model_type, heads, kv_heads, head_dim);
        let attn = attention(c, model_type, hidden, heads, kv_heads, head_dim, mla)?;
        let mlp = Mlp::from_config(c, model_type, hidden)?;
        let mut layers = Vec::with_capacity(kinds.len());
        let state = if kinds.contains(&LayerKind::State) {
            state_mixer(c, model_type, hidden, notes)?
        } else {
            LayerParams::default()
        };
        for (i, kind) in kinds.iter().enumerate() {
            let mixer = match kind {
                LayerKind::State => state,
                _ => LayerParams {
                    other: attn.other + qk_norm,
                    ..attn
                },
            };
            let ffn = mlp.layer(i as P);
            layers.push(LayerParams {
                linear: mixer.linear + ffn.linear,
                other: mixer.other + ffn.other + layer_norms,
            });
        }
        Ok(ParamSpec {
            vocab: vocab as u64,
            token_inter: sat(mlp.token_inter(c)?),
            embed: vocab * hidden,
            lm_head: if tied { 0 } else { vocab * hidden },
            final_norm: norm,
            layers,
            quant: quant(c, notes)?,
        })
    }
}

/// Norms in each decoder layer: two (before attention, before the MLP) for
/// most; four for Gemma 2 and 3 (before and after each); one where attention
/// and the MLP run in parallel off a single norm (Falcon-7B's parallel_attn
/// without new_decoder_architecture, GPT-J, Phi-1/2).
fn norms_per_layer(c: &Obj, model_type: &str) -> u64 {
    match model_type {
        "gemma2" | "gemma3" | "gemma3_text" => 4,
        // Command R: attention and MLP in parallel off one (bias-free) LayerNorm.
        "gptj" | "phi" | "cohere" | "cohere2" => 1,
        "falcon" => {
            let parallel = c.bool("parallel_attn").unwrap_or(true);
            let new_arch = c.bool("new_decoder_architecture").unwrap_or(false);
            if parallel && !new_arch {
                1
            } else {
                2
            }
        }
        _ => 2,
    }
}

/// RMSNorms on the queries and keys: per head (Qwen3, Qwen3-Next, Gemma 3),
/// one head_dim-wide weight each; over all heads (OLMo 2 and 3), one
/// weight per query and per key element; Command R+ (use_qk_norm) per head
/// with weights of its own. Llama 4's qk norm has no weight.
fn qk_norm(c: &Obj, model_type: &str, heads: P, kv: P, hd: P) -> P {
    match model_type {
        "qwen3" | "qwen3_moe" | "qwen3_next" | "gemma3" | "gemma3_text" => 2 * hd,
        "olmo2" | "olmo3" => (heads + kv) * hd,
        "cohere" if c.bool("use_qk_norm") == Some(true) => (heads + kv) * hd,
        _ => 0,
    }
}

fn attention(
    c: &Obj,
    model_type: &str,
    h: P,
    heads: P,
    kv: P,
    hd: P,
    mla: Option<Mla>,
) -> Result<LayerParams, String> {
    if let Some(m) = mla {
        let (nope, rope, lora, v) = (
            m.qk_nope_head_dim as P,
            m.qk_rope_head_dim as P,
            m.kv_lora_rank as P,
            m.v_head_dim as P,
        );
        let qk = nope + rope;
        let (q, q_norm) = match m.q_lora_rank.map(P::from) {
            Some(r) => (h * r + r * heads * qk, r),
            None => (h * heads * qk, 0),
        };
        let kv_a = h * (lora + rope);
        let kv_b = lora * heads * (nope + v);
        let o = heads * v * h;
        return Ok(LayerParams {
            linear: q + kv_a + kv_b + o,
            other: q_norm + lora,
        });
    }
    let q = heads * hd;
    let k = kv * hd;
    // Qwen3-Next gates the attention output: q_proj gives a gate as wide as the queries.
    let q_out = if model_type == "qwen3_next" { 2 * q } else { q };
    let linear = h * q_out + 2 * h * k + q * h;
    // GPT-OSS: a learned attention sink per head.
    let sinks = if model_type == "gpt_oss" { heads } else { 0 };
    // Biases: attention_bias (q, k, v, o) where stated; Qwen2's q, k, v biases; Falcon's `bias`.
    let bias = match c
        .bool("attention_bias")
        .or_else(|| (model_type == "falcon").then(|| c.bool("bias").unwrap_or(false)))
    {
        Some(true) => q + 2 * k + h,
        Some(false) => 0,
        None if model_type.starts_with("qwen2") => q + 2 * k,
        None => 0,
    };
    Ok(LayerParams {
        linear,
        other: bias + sinks,
    })
}

/// Mamba, Mamba2 or Gated DeltaNet mixer parameters (see layout::state_elems for the keys).
fn state_mixer(
    c: &Obj,
    model_type: &str,
    h: P,
    notes: &mut Vec<String>,
) -> Result<LayerParams, String> {
    if let Some(kernel) = c.opt_u64(&["linear_conv_kernel_dim"])?.map(P::from) {
        let nk = P::from(c.req_u64(&["linear_num_key_heads"])?);
        let nv = P::from(c.req_u64(&["linear_num_value_heads"])?);
        let dk = P::from(c.req_u64(&["linear_key_head_dim"])?);
        let dv = P::from(c.req_u64(&["linear_value_head_dim"])?);
        let conv_ch = 2 * nk * dk + nv * dv;
        let linear = h * (2 * nk * dk + 2 * nv * dv) + h * 2 * nv + nv * dv * h;
        return Ok(LayerParams {
            linear,
            // conv1d (no bias), dt_bias and A_log per value head, the gated
            // RMSNorm over a value head.
            other: conv_ch * kernel + 2 * nv + dv,
        });
    }
    let d_state = c
        .opt_u64(&["mamba_d_state", "ssm_state_size", "state_size"])?
        .map(P::from)
        .unwrap_or(16);
    let d_conv = c
        .opt_u64(&["mamba_d_conv", "conv_kernel", "d_conv"])?
        .map(P::from)
        .unwrap_or(4);
    let expand = super::layout::mamba_expand(c)?;
    let d_inner = match (
        c.opt_u64(&["mamba_n_heads"])?.map(P::from),
        c.opt_u64(&["mamba_d_head"])?.map(P::from),
    ) {
        (Some(n), Some(d)) => n * d,
        _ => (expand * h as f64) as P,
    };
    Ok(
        match c.opt_u64(&["mamba_n_groups", "n_groups"])?.map(P::from) {
            Some(g) => {
                let n_heads = c
                    .opt_u64(&["mamba_n_heads"])?
                    .map(P::from)
                    .unwrap_or(d_inner / 64)
                    .max(1);
                let conv_ch = d_inner + 2 * g * d_state;
                let linear = h * (2 * d_inner + 2 * g * d_state + n_heads) + d_inner * h;
                LayerParams {
                    linear,
                    other: conv_ch * (d_conv + 1) + 3 * n_heads + d_inner,
                }
            }
            None => {
                let dt_rank = c
                    .opt_u64(&["mamba_dt_rank", "time_step_rank"])?
                    .map(P::from)
                    .unwrap_or(h.div_ceil(16));
                if c.opt_u64(&["mamba_dt_rank"])?.map(P::from).is_none() {
                    notes.push(format!(
                        "Mamba dt_rank not in the config: ceil(hidden/16) = {dt_rank} assumed"
                    ));
                }
                let linear = h * 2 * d_inner
                    + d_inner * (dt_rank + 2 * d_state)
                    + dt_rank * d_inner
                    + d_inner * h;
                // Jamba's mixer norms dt, B and C (transformers' JambaMambaMixer always).
                let inner_norms = if c
                    .bool("mamba_inner_layernorms")
                    .unwrap_or(model_type == "jamba")
                {
                    dt_rank + 2 * d_state
                } else {
                    0
                };
                LayerParams {
                    linear,
                    other: d_inner * (d_conv + 1)
                        + d_inner
                        + d_inner * d_state
                        + d_inner
                        + inner_norms,
                }
            }
        },
    )
}
