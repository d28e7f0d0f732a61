//! A model as the KV arithmetic needs it, read from a Hugging Face
//! config.json: attention geometry, what every layer keeps per token or per
//! sequence, and what the parameter count needs.

use super::arch::{LayerKind, Mla};
use super::defaults;
use super::dtype::Dtype;
use super::json::Obj;
use super::layout;
use super::params::ParamSpec;

#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub model_type: String,
    pub hidden: u64,
    pub heads: u64,
    /// KV heads (1 for multi-query; `heads` for multi-head). Ignored under MLA.
    pub kv_heads: u64,
    pub head_dim: u64,
    pub mla: Option<Mla>,
    pub layers: Vec<LayerKind>,
    /// Elements of state one state layer keeps per sequence (whole layer, all ranks).
    pub state_elems_per_layer: u64,
    /// The checkpoint's dtype (torch_dtype).
    pub dtype: Dtype,
    pub max_position_embeddings: Option<u64>,
    pub params: ParamSpec,
    /// metadata.total_size of model.safetensors.index.json beside the config.
    pub checkpoint_bytes: Option<u64>,
    /// Things the user should know about how the figures were made.
    pub notes: Vec<String>,
}

impl Model {
    pub fn num_layers(&self) -> u64 {
        self.layers.len() as u64
    }

    pub fn attention_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|k| !matches!(k, LayerKind::State))
            .count()
    }

    /// KV elements one attention layer keeps per token, over all ranks.
    pub fn kv_elems_per_token_layer(&self) -> u64 {
        match self.mla {
            Some(m) => m.kv_lora_rank + m.qk_rope_head_dim,
            None => 2 * self.kv_heads * self.head_dim,
        }
    }
}

fn heads_and_kv(c: &Obj, hidden: u64) -> Result<(u64, u64, u64), String> {
    let heads = c.req_u64(&["num_attention_heads", "n_head", "num_heads"])?;
    if heads == 0 {
        return Err(c.bad("num_attention_heads", "must be positive"));
    }
    // Falcon: new_decoder_architecture has num_kv_heads; multi_query has one.
    let kv = if let Some(kv) = c.opt_u64(&["num_key_value_heads", "num_kv_heads", "n_head_kv"])? {
        kv
    } else if c.bool("multi_query").unwrap_or(false)
        && !c.bool("new_decoder_architecture").unwrap_or(false)
    {
        1
    } else {
        heads
    };
    if kv == 0 {
        return Err(c.bad("num_key_value_heads", "must be positive"));
    }
    // Grouped-query attention shares each KV head among a whole number of
    // query heads: more KV heads than heads, or a remainder, is no model.
    if kv > heads || !heads.is_multiple_of(kv) {
        return Err(c.bad(
            "num_key_value_heads",
            &if kv > heads {
                format!("{kv} is more than num_attention_heads {heads} (each KV head serves one or more attention heads)")
            } else {
                format!("{kv} does not divide num_attention_heads {heads} (each KV head serves a whole number of attention heads)")
            },
        ));
    }
    let head_dim = match c.opt_u64(&["head_dim"])? {
        Some(d) if d > 0 => d,
        _ => {
            if !hidden.is_multiple_of(heads) {
                return Err(c.bad(
                    "hidden_size",
                    &format!(
                        "{hidden} is not a multiple of num_attention_heads {heads}; give head_dim"
                    ),
                ));
            }
            hidden / heads
        }
    };
    Ok((heads, kv, head_dim))
}

fn mla(c: &Obj) -> Result<Option<Mla>, String> {
    let Some(kv_lora_rank) = c.opt_u64(&["kv_lora_rank"])? else {
        return Ok(None);
    };
    Ok(Some(Mla {
        kv_lora_rank,
        qk_rope_head_dim: c.req_u64(&["qk_rope_head_dim"])?,
        qk_nope_head_dim: c.opt_u64(&["qk_nope_head_dim"])?.unwrap_or(0),
        v_head_dim: c.opt_u64(&["v_head_dim"])?.unwrap_or(0),
        q_lora_rank: c.opt_u64(&["q_lora_rank"])?,
    }))
}

/// Bounds that no real model comes near (the largest have ~2^41 parameters,
/// ~100 layers, ~2^17 KV elements per token and layer), and that keep every
/// figure derived from a model inside u64.
const MAX_LAYERS: u64 = 1 << 16;
const MAX_PARAMS: u128 = 1 << 50;
const MAX_ELEMS: u128 = 1 << 36;

/// The config with its config class's defaults filled in (see `defaults`),
/// in text_config when the language model is there.
fn with_class_defaults(root: &serde_json::Value, notes: &mut Vec<String>) -> serde_json::Value {
    let mut root = root.clone();
    let Some(top) = root.as_object_mut() else {
        return root;
    };
    let top_type = top
        .get("model_type")
        .and_then(|v| v.as_str())
        .map(String::from);
    match top.get("text_config").and_then(|t| t.as_object()).cloned() {
        Some(mut text) => {
            let model_type = text
                .get("model_type")
                .and_then(|v| v.as_str())
                .map(String::from)
                .or(top_type)
                .unwrap_or_default();
            let model_type = defaults::canonical(&model_type);
            defaults::apply(&mut text, Some(&*top), model_type, "text_config.", notes);
            top.insert("text_config".into(), serde_json::Value::Object(text));
        }
        None => {
            let model_type = top_type.unwrap_or_default();
            defaults::apply(top, None, defaults::canonical(&model_type), "", notes)
        }
    }
    root
}

/// Reads a model from a parsed config.json. `name` labels it in output.
pub fn from_config(
    name: &str,
    root: &serde_json::Value,
    checkpoint_bytes: Option<u64>,
) -> Result<Model, String> {
    let mut notes = Vec::new();
    let root = with_class_defaults(root, &mut notes);
    let top = Obj::root(&root)?;
    // Multimodal wrappers keep the language model under text_config.
    let (c, wrapped) = match top.child("text_config")? {
        Some(t) => (t.with_fallback(top), true),
        None => (top, false),
    };
    let model_type = defaults::canonical(&c.str("model_type").unwrap_or_default()).to_string();
    let hidden = c.req_u64(&["hidden_size", "n_embd", "d_model"])?;
    let num_layers = c.req_u64(&["num_hidden_layers", "n_layer", "num_layers"])?;
    if num_layers == 0 || hidden == 0 {
        return Err(c.bad(
            if hidden == 0 {
                "hidden_size"
            } else {
                "num_hidden_layers"
            },
            "must be positive",
        ));
    }
    if num_layers > MAX_LAYERS {
        return Err(c.bad(
            "num_hidden_layers",
            &format!("{num_layers} is implausibly large (at most {MAX_LAYERS})"),
        ));
    }
    let (heads, kv_heads, head_dim) = heads_and_kv(&c, hidden)?;
    let mla = mla(&c)?;
    let dtype = match c.str("torch_dtype").or_else(|| c.str("dtype")) {
        Some(s) => {
            Dtype::parse(&s).ok_or_else(|| c.bad("torch_dtype", &format!("unknown dtype '{s}'")))?
        }
        None => Dtype::BF16,
    };
    let layers = layout::layer_kinds(&c, &model_type, num_layers as usize)?;
    let state_elems_per_layer = if layers.contains(&LayerKind::State) {
        layout::state_elems(&c, hidden)?
    } else {
        0
    };
    if c.str("torch_dtype").is_none() && c.str("dtype").is_none() {
        notes.push("config has no torch_dtype: bfloat16 assumed".into());
    }
    if wrapped {
        notes.push("multimodal config: the language model under text_config is modelled; vision weights count only through model.safetensors.index.json".into());
    }
    let params = ParamSpec::from_config(
        &c,
        &model_type,
        hidden,
        heads,
        kv_heads,
        head_dim,
        mla,
        &layers,
        &mut notes,
    )?;
    // Sizes no model has, which would also take the arithmetic past 64 bits.
    let implausible = |what: &str, n: u128, max: u128| -> Result<(), String> {
        if n > max {
            Err(format!(
                "config.json: {what} come to {n}, implausibly many (at most {max}): is this a model's config?"
            ))
        } else {
            Ok(())
        }
    };
    implausible("parameters", params.total_exact(), MAX_PARAMS)?;
    let kv_elems = match mla {
        Some(m) => m.kv_lora_rank as u128 + m.qk_rope_head_dim as u128,
        None => 2 * kv_heads as u128 * head_dim as u128,
    };
    implausible("KV elements per token and layer", kv_elems, MAX_ELEMS)?;
    implausible(
        "state elements per layer",
        state_elems_per_layer as u128,
        MAX_ELEMS,
    )?;
    Ok(Model {
        name: name.to_string(),
        model_type,
        hidden,
        heads,
        kv_heads,
        head_dim,
        mla,
        layers,
        state_elems_per_layer,
        dtype,
        max_position_embeddings: match c.opt_u64(&[
            "max_position_embeddings",
            "n_positions",
            "max_seq_len",
        ])? {
            Some(0) => {
                return Err(c.bad(
                    "max_position_embeddings",
                    "is 0: a model serves at least one token",
                ))
            }
            n => n,
        },
        params,
        checkpoint_bytes,
        notes,
    })
}
