//! Which layers attend over everything, which over a window, and which keep
//! a fixed state instead (hybrid Mamba / linear-attention models); and how
//! big that state is.

use super::arch::LayerKind;
use super::json::Obj;

/// Model types whose sliding/global interleaving is implicit in the
/// architecture: every n-th layer is global, the others slide.
fn implicit_pattern(model_type: &str) -> Option<u64> {
    match model_type {
        // Gemma 2: layers alternate, sliding first (layer 0 slides, layer 1 is global).
        "gemma2" => Some(2),
        // Gemma 3: five sliding layers, then a global one.
        "gemma3" | "gemma3_text" => Some(6),
        // Command R7B and OLMo 3: three sliding, then a global one.
        "cohere2" | "olmo3" => Some(4),
        // GPT-OSS: alternating, sliding first.
        "gpt_oss" => Some(2),
        _ => None,
    }
}

/// One entry of `key` (layer_types, or layers_block_type as Jamba-style and
/// Granite hybrids name it).
fn kind_of(
    key: &str,
    name: &str,
    window: Option<u64>,
    c: &Obj,
    i: usize,
) -> Result<LayerKind, String> {
    Ok(match name {
        // Llama 4's chunked attention: a token attends within its chunk of
        // attention_chunk_size tokens, so a layer keeps at most a chunk of
        // KV: a window, for the arithmetic.
        "chunked_attention" => LayerKind::Sliding(chunk(c)?.ok_or_else(|| {
            c.bad(
                "attention_chunk_size",
                &format!("is needed by {key}[{i}] = {name}"),
            )
        })?),
        "full_attention" | "attention" | "global" | "global_attention" => LayerKind::Full,
        "sliding_attention" | "sliding" | "local" | "local_attention" => {
            LayerKind::Sliding(window.ok_or_else(|| {
                c.bad(
                    "sliding_window",
                    &format!("is needed by {key}[{i}] = {name}"),
                )
            })?)
        }
        "linear_attention" | "mamba" | "mamba2" | "ssm" | "recurrent" => LayerKind::State,
        other => {
            return Err(c.bad(
                &format!("{key}[{i}]"),
                &format!("has an unknown layer type '{other}'"),
            ))
        }
    })
}

pub fn layer_kinds(c: &Obj, model_type: &str, n: usize) -> Result<Vec<LayerKind>, String> {
    // `use_sliding_window: false` switches the window off (Qwen2 and kin).
    let window = if c.bool("use_sliding_window") == Some(false) {
        None
    } else {
        c.opt_u64(&["sliding_window", "attention_window_size"])?
            .filter(|&w| w > 0)
    };

    for key in ["layer_types", "layers_block_type"] {
        let Some(types) = c.array(key) else { continue };
        if types.len() != n {
            return Err(c.bad(key, &format!("has {} entries for {n} layers", types.len())));
        }
        return types
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_str() {
                Some(s) => kind_of(key, s, window, c, i),
                None => Err(c.bad(&format!("{key}[{i}]"), "must be a string")),
            })
            .collect();
    }

    // Bamba and kin: the attention layers listed, Mamba elsewhere.
    if let Some(listed) = c.array("attn_layer_indices") {
        let mut kinds = vec![LayerKind::State; n];
        for v in listed {
            match v.as_u64().filter(|&i| (i as usize) < n) {
                Some(i) => kinds[i as usize] = LayerKind::Full,
                None => {
                    return Err(c.bad(
                        "attn_layer_indices",
                        &format!("has {v}, not a layer index below {n}"),
                    ))
                }
            }
        }
        return Ok(kinds);
    }

    if let Some(kinds) = llama4_chunks(c, model_type, n)? {
        return Ok(kinds);
    }

    let mut kinds = vec![LayerKind::Full; n];
    // Hybrids: Jamba's attention period, Qwen3-Next's full-attention interval.
    if let Some(period) = c.opt_u64(&["attn_layer_period"])? {
        if period == 0 {
            return Err(c.bad("attn_layer_period", "must be positive"));
        }
        let offset = c.opt_u64(&["attn_layer_offset"])?.unwrap_or(0);
        for (i, k) in kinds.iter_mut().enumerate() {
            if i as u64 % period != offset {
                *k = LayerKind::State;
            }
        }
    } else if let Some(interval) = c.opt_u64(&["full_attention_interval"])? {
        if interval == 0 {
            return Err(c.bad("full_attention_interval", "must be positive"));
        }
        for (i, k) in kinds.iter_mut().enumerate() {
            if !(i as u64 + 1).is_multiple_of(interval) {
                *k = LayerKind::State;
            }
        }
    }

    let Some(w) = window else { return Ok(kinds) };
    let pattern = match c.opt_u64(&["sliding_window_pattern"])? {
        Some(0) => return Err(c.bad("sliding_window_pattern", "must be positive")),
        Some(p) => Some(p),
        None => implicit_pattern(model_type),
    };
    let max_window_layers = if c.has("use_sliding_window") {
        c.opt_u64(&["max_window_layers"])?
    } else {
        None
    };
    for (i, k) in kinds.iter_mut().enumerate() {
        if *k == LayerKind::State {
            continue;
        }
        let sliding = match (pattern, max_window_layers) {
            // Every p-th layer (1-based) is global.
            (Some(p), _) => !(i as u64 + 1).is_multiple_of(p),
            // Qwen2: the first max_window_layers layers attend fully, the rest slide.
            (None, Some(m)) => i as u64 >= m,
            // Mistral: a window on every layer.
            (None, None) => true,
        };
        if sliding {
            *k = LayerKind::Sliding(w);
        }
    }
    Ok(kinds)
}

fn chunk(c: &Obj) -> Result<Option<u64>, String> {
    Ok(c.opt_u64(&["attention_chunk_size"])?.filter(|&w| w > 0))
}

/// Llama 4 without layer_types: the RoPE layers attend in chunks, the NoPE
/// ones (no_rope_layers[i] == 0, by default every no_rope_layer_interval-th
/// layer) over everything; Llama4TextConfig derives layer_types so.
fn llama4_chunks(c: &Obj, model_type: &str, n: usize) -> Result<Option<Vec<LayerKind>>, String> {
    if !matches!(model_type, "llama4" | "llama4_text") {
        return Ok(None);
    }
    let Some(w) = chunk(c)? else { return Ok(None) };
    let rope: Vec<bool> = match c.array("no_rope_layers").filter(|a| !a.is_empty()) {
        Some(a) => {
            if a.len() < n {
                return Err(c.bad(
                    "no_rope_layers",
                    &format!("has {} entries for {n} layers", a.len()),
                ));
            }
            a.iter().take(n).map(|v| v.as_u64() != Some(0)).collect()
        }
        None => {
            let every = match c.opt_u64(&["no_rope_layer_interval"])? {
                Some(0) => return Err(c.bad("no_rope_layer_interval", "must be positive")),
                Some(e) => e,
                None => 4,
            };
            (0..n as u64)
                .map(|i| !(i + 1).is_multiple_of(every))
                .collect()
        }
    };
    Ok(Some(
        rope.into_iter()
            .map(|r| {
                if r {
                    LayerKind::Sliding(w)
                } else {
                    LayerKind::Full
                }
            })
            .collect(),
    ))
}

/// Mamba's d_inner / hidden (default 2).
pub fn mamba_expand(c: &Obj) -> Result<f64, String> {
    let expand = c
        .f64("mamba_expand")
        .or_else(|| c.f64("expand"))
        .unwrap_or(2.0);
    if !(expand > 0.0 && expand <= 1024.0) {
        return Err(c.bad(
            "mamba_expand",
            &format!("{expand} is out of range (0, 1024]"),
        ));
    }
    Ok(expand)
}

/// Elements of state one Mamba or linear-attention layer keeps per sequence.
///
/// Mamba (Jamba): a convolution state of (d_conv - 1) x d_inner and an SSM
/// state of d_inner x d_state, d_inner = expand x hidden. Mamba2 (Bamba,
/// Zamba2, Falcon-H1, NemotronH): convolution over d_inner + 2 x n_groups x
/// d_state channels, SSM state n_heads x head_dim x d_state. Gated DeltaNet
/// (Qwen3-Next's linear attention): convolution over (2 x key heads x key
/// dim) plus (value heads x value dim) channels, recurrent state value heads
/// x key dim x value dim.
pub fn state_elems(c: &Obj, hidden: u64) -> Result<u64, String> {
    // In u128: config integers are at most 2^32, products here of up to four.
    let get = |keys: &[&str]| c.opt_u64(keys).map(|v| v.map(u128::from));
    let need = |keys: &[&str]| c.req_u64(keys).map(u128::from);
    let sat = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
    if let Some(kernel) = get(&["linear_conv_kernel_dim"])? {
        let nk = need(&["linear_num_key_heads"])?;
        let nv = need(&["linear_num_value_heads"])?;
        let dk = need(&["linear_key_head_dim"])?;
        let dv = need(&["linear_value_head_dim"])?;
        let conv = kernel.saturating_sub(1) * (2 * nk * dk + nv * dv);
        return Ok(sat(conv + nv * dk * dv));
    }
    let d_state = get(&["mamba_d_state", "ssm_state_size", "state_size"])?;
    let d_conv = get(&["mamba_d_conv", "conv_kernel", "d_conv"])?;
    let (Some(d_state), Some(d_conv)) = (d_state, d_conv) else {
        return Err(c.bad(
            "mamba_d_state",
            "and mamba_d_conv (or linear_* sizes) are needed: the config has state layers (Mamba or linear attention)",
        ));
    };
    let expand = mamba_expand(c)?;
    let n_heads = get(&["mamba_n_heads"])?;
    let d_head = get(&["mamba_d_head"])?;
    let d_inner = match (n_heads, d_head) {
        (Some(h), Some(d)) => h * d,
        _ => get(&["mamba_d_inner", "intermediate_size_mamba"])?
            .unwrap_or((expand * hidden as f64) as u64 as u128),
    };
    let groups = get(&["mamba_n_groups", "n_groups"])?;
    Ok(sat(match groups {
        // Mamba2
        Some(g) => {
            let heads = n_heads.unwrap_or(d_inner / d_head.unwrap_or(64).max(1));
            let head_dim = d_inner / heads.max(1);
            d_conv.saturating_sub(1) * (d_inner + 2 * g * d_state) + heads * head_dim * d_state
        }
        // Mamba
        None => d_conv.saturating_sub(1) * d_inner + d_inner * d_state,
    }))
}
