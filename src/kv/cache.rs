//! KV-cache arithmetic: bytes per token and per request, whole model and
//! per GPU under tensor and pipeline parallelism.
//!
//! Per attention layer and token: 2 (K and V) x KV heads x head_dim x dtype
//! bytes; under MLA one latent of kv_lora_rank + qk_rope_head_dim elements
//! (no factor 2). Tensor parallelism splits KV heads: max(1, kv_heads / tp)
//! per rank, replicated when tp > kv_heads; MLA's latent is replicated on
//! every rank. Pipeline parallelism gives each stage a contiguous range of
//! layers, as vLLM does: num_layers / pp each, and the remainder one extra
//! layer per stage from the second-to-last stage backwards (the last stage
//! also holds the LM head, the first the embedding).

use super::arch::LayerKind;
use super::dtype::Dtype;
use super::model::Model;
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallel {
    pub tp: u64,
    pub pp: u64,
}

impl Parallel {
    pub const NONE: Parallel = Parallel { tp: 1, pp: 1 };

    /// Checks the split against the model; errors name the flag.
    pub fn check(&self, m: &Model) -> Result<(), String> {
        if self.tp == 0 {
            return Err("--tp must be at least 1".into());
        }
        if self.pp == 0 {
            return Err("--pp must be at least 1".into());
        }
        if self.pp > m.num_layers() {
            return Err(format!(
                "--pp {} is larger than the model's {} layers",
                self.pp,
                m.num_layers()
            ));
        }
        if !m.heads.is_multiple_of(self.tp) {
            return Err(format!(
                "--tp {} does not divide the {} attention heads",
                self.tp, m.heads
            ));
        }
        if m.mla.is_none() {
            let kv = m.kv_heads;
            let ok = if self.tp <= kv {
                kv.is_multiple_of(self.tp)
            } else {
                self.tp.is_multiple_of(kv)
            };
            if !ok {
                return Err(format!(
                    "--tp {} and the {kv} KV heads divide neither way (KV heads are split when tp divides them, replicated when they divide tp)",
                    self.tp
                ));
            }
        }
        Ok(())
    }

    /// KV heads each tensor-parallel rank holds.
    pub fn kv_heads_per_rank(&self, m: &Model) -> u64 {
        (m.kv_heads / self.tp).max(1)
    }

    /// Layer ranges of the pipeline stages, vLLM's way.
    pub fn stages(&self, layers: usize) -> Vec<Range<usize>> {
        let pp = self.pp as usize;
        let mut sizes = vec![layers / pp; pp];
        for i in 2..layers % pp + 2 {
            sizes[pp - i] += 1;
        }
        let mut start = 0;
        sizes
            .into_iter()
            .map(|s| {
                let r = start..start + s;
                start += s;
                r
            })
            .collect()
    }
}

/// Which share of the model a figure is for.
#[derive(Clone, Debug)]
pub struct Share {
    pub layers: Range<usize>,
    /// None: the whole model (all ranks); Some: one tensor-parallel rank.
    pub rank_of: Option<Parallel>,
}

impl Share {
    pub fn whole(m: &Model) -> Share {
        Share {
            layers: 0..m.layers.len(),
            rank_of: None,
        }
    }
}

/// KV bytes one attention layer holds per token for this share.
fn layer_token_bytes(m: &Model, kv: Dtype, rank_of: Option<Parallel>) -> u64 {
    let elems = match (m.mla, rank_of) {
        (Some(_), _) | (None, None) => m.kv_elems_per_token_layer(),
        (None, Some(p)) => 2u64
            .saturating_mul(p.kv_heads_per_rank(m))
            .saturating_mul(m.head_dim),
    };
    elems.saturating_mul(kv.bytes())
}

/// KV bytes per token over the share's attention layers, no window cap.
pub fn per_token(m: &Model, kv: Dtype, s: &Share) -> u64 {
    let n = m.layers[s.layers.clone()]
        .iter()
        .filter(|k| !matches!(k, LayerKind::State))
        .count() as u64;
    n.saturating_mul(layer_token_bytes(m, kv, s.rank_of))
}

/// KV bytes one request of `tokens` tokens holds: per layer, tokens capped by
/// the layer's window, rounded up to whole blocks of `block` tokens.
pub fn per_request(m: &Model, kv: Dtype, s: &Share, tokens: u64, block: u64) -> u64 {
    let per = layer_token_bytes(m, kv, s.rank_of);
    let blocks = |t: u64| t.div_ceil(block).saturating_mul(block);
    m.layers[s.layers.clone()]
        .iter()
        .map(|k| match k {
            LayerKind::Full => blocks(tokens).saturating_mul(per),
            LayerKind::Sliding(w) => blocks(tokens.min(*w)).saturating_mul(per),
            LayerKind::State => 0,
        })
        .fold(0, u64::saturating_add)
}

/// Fixed state bytes one sequence holds in the share's Mamba / linear-attention
/// layers (split across tensor-parallel ranks), in the model's dtype.
pub fn state_per_sequence(m: &Model, s: &Share) -> u64 {
    let n = m.layers[s.layers.clone()]
        .iter()
        .filter(|k| matches!(k, LayerKind::State))
        .count() as u64;
    let per_layer = match s.rank_of {
        Some(p) => m.state_elems_per_layer.div_ceil(p.tp),
        None => m.state_elems_per_layer,
    };
    n.saturating_mul(per_layer)
        .saturating_mul(m.dtype.served().bytes())
}
