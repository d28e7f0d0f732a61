//! Recognising the KV cache among live allocations, from their sizes and
//! the KV model, in the three layouts serving engines use:
//!
//! - paged (vLLM): one tensor per attention layer, a whole number of pages;
//!   page = block_size x 2 (K, V) x KV heads x head_dim x dtype (MLA: one
//!   latent, no 2). Capacity = pages x block_size tokens.
//! - token pool (SGLang): K and V buffers per layer (one latent buffer under
//!   MLA) of (tokens + 1) rows of KV heads x head_dim x dtype. Capacity = rows - 1.
//! - per request (Hugging Face): K and V tensors per layer for each request
//!   still in flight when the report was written, a whole number of token
//!   rows each.

use super::markers::Phases;
use crate::kv::{cache, Dtype, Model, Parallel};
use crate::report::{LiveAlloc, Report, Space};
use std::collections::{BTreeMap, HashSet};

/// The KV geometry of one GPU of the deployment.
#[derive(Clone, Debug)]
pub struct Geometry {
    /// Attention layers on a GPU, for each pipeline stage.
    pub layers_per_stage: Vec<u64>,
    /// One token of K (or V, or the MLA latent) of one layer on one GPU.
    pub token_row: u64,
    /// vLLM's page of one layer: block_size tokens of K and V.
    pub page: u64,
    pub block: u64,
    pub mla: bool,
    /// KV bytes per token on one GPU (the largest stage), no window cap.
    pub per_token: u64,
}

impl Geometry {
    pub fn new(m: &Model, par: Parallel, kv: Dtype, block: u64) -> Geometry {
        let token_row = match m.mla {
            Some(mla) => (mla.kv_lora_rank + mla.qk_rope_head_dim) * kv.bytes(),
            None => par.kv_heads_per_rank(m) * m.head_dim * kv.bytes(),
        };
        let stages = par.stages(m.layers.len());
        let layers_per_stage = stages
            .iter()
            .map(|r| {
                m.layers[r.clone()]
                    .iter()
                    .filter(|k| !matches!(k, crate::kv::arch::LayerKind::State))
                    .count() as u64
            })
            .collect();
        let per_token = stages
            .into_iter()
            .map(|layers| {
                cache::per_token(
                    m,
                    kv,
                    &cache::Share {
                        layers,
                        rank_of: Some(par),
                    },
                )
            })
            .max()
            .unwrap_or(0);
        Geometry {
            layers_per_stage,
            token_row,
            page: block * token_row * if m.mla.is_some() { 1 } else { 2 },
            block,
            mla: m.mla.is_some(),
            per_token,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Paged,
    TokenPool,
    PerRequest,
    /// Recognised by its shape alone, without a model: equal tensors made
    /// after the weights and before serving (tokens unknown).
    ByShape,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Paged => "paged, one tensor per layer (vLLM)",
            Layout::TokenPool => "token pool, K and V buffers per layer (SGLang)",
            Layout::PerRequest => "per request, K and V tensors per layer (Hugging Face)",
            Layout::ByShape => {
                "preallocated, recognised by shape (equal tensors made after the weights)"
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct KvGroup {
    pub layout: Layout,
    pub tensors: u64,
    pub tensor_bytes: u64,
    /// Tokens the group holds (the cache's capacity; for per-request tensors, their length).
    pub tokens: u64,
    pub made_t_ms: f64,
}

impl KvGroup {
    pub fn bytes(&self) -> u64 {
        self.tensors * self.tensor_bytes
    }
}

#[derive(Clone, Debug, Default)]
pub struct KvFound {
    pub groups: Vec<KvGroup>,
    /// Addresses of the allocations recognised as KV cache.
    pub addresses: HashSet<u64>,
}

impl KvFound {
    pub fn bytes(&self) -> u64 {
        self.groups.iter().map(|g| g.bytes()).sum()
    }

    /// Tokens of the preallocated cache (paged or pool), if one was found
    /// with a model (one recognised by shape alone has no token count).
    pub fn capacity_tokens(&self) -> Option<u64> {
        self.groups
            .iter()
            .filter(|g| matches!(g.layout, Layout::Paged | Layout::TokenPool))
            .map(|g| g.tokens)
            .min()
    }

    pub fn preallocated_bytes(&self) -> u64 {
        self.groups
            .iter()
            .filter(|g| g.layout != Layout::PerRequest)
            .map(|g| g.bytes())
            .sum()
    }
}

/// The segment sizes PyTorch's caching allocator asks CUDA for when it serves
/// small requests (2 MiB segments for up to 1 MiB) and middling ones (20 MiB
/// for 1 to 10 MiB): a few of them, in any count, say nothing of a KV cache
/// (on the H200 fixture, 8 segments of 2 MiB on a 4-layer model looked like a
/// token pool of 2 x 4 buffers).
const CACHING_SEGMENTS: [u64; 2] = [2 << 20, 20 << 20];

/// A preallocated KV cache recognised without a model, by its shape: the
/// largest group of equal tensors (at least 2, of 1 MiB or more, not
/// PyTorch's pool segments) made after at least half of the other memory
/// held before serving (the weights come first: per-layer weight tensors
/// start with the first layer) and, when serving is marked, before it; and
/// a fifth or more of the device's live memory. vLLM's paged blocks and
/// SGLang's token pools both look like this; a cache the engine sized by
/// design is not a utilisation problem.
pub fn by_shape(r: &Report, device: u32, phases: &Phases) -> KvFound {
    let serving = phases.serving_phase(r);
    let rows: Vec<&LiveAlloc> = r
        .live
        .allocations
        .iter()
        .filter(|a| a.device == device && a.api.space() == Space::Device)
        .filter(|a| serving.is_none_or(|s| a.phase < s))
        .collect();
    let live: u64 = rows.iter().map(|a| a.size).sum();
    let mut by_size: BTreeMap<u64, Vec<&LiveAlloc>> = BTreeMap::new();
    for a in &rows {
        by_size.entry(a.size).or_default().push(a);
    }
    let mut best: Option<(u64, KvGroup, Vec<u64>)> = None;
    for (size, group) in by_size {
        let n = group.len() as u64;
        if n < 2 || size < (1 << 20) || CACHING_SEGMENTS.contains(&size) {
            continue;
        }
        let made = group.iter().map(|a| a.t_ms).fold(f64::INFINITY, f64::min);
        // The other memory held before serving, in the order it was made.
        let mut others: Vec<(f64, u64)> = rows
            .iter()
            .filter(|a| a.size != size)
            .map(|a| (a.t_ms, a.size))
            .collect();
        others.sort_by(|a, b| a.0.total_cmp(&b.0));
        let other_total: u64 = others.iter().map(|x| x.1).sum();
        let before: u64 = others.iter().filter(|x| x.0 < made).map(|x| x.1).sum();
        let bytes = n * size;
        // With nothing else held there are no weights for it to follow: equal
        // tensors alone (an allocation loop, a test) are not a KV cache.
        if other_total == 0 || 2 * before < other_total || 5 * bytes < live {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _, _)| bytes > *b) {
            best = Some((
                bytes,
                KvGroup {
                    layout: Layout::ByShape,
                    tensors: n,
                    tensor_bytes: size,
                    tokens: 0,
                    made_t_ms: made,
                },
                group.iter().map(|a| a.address).collect(),
            ));
        }
    }
    let mut found = KvFound::default();
    if let Some((_, g, addresses)) = best {
        found.addresses.extend(addresses);
        found.groups.push(g);
    }
    found
}

pub fn detect(r: &Report, device: u32, g: &Geometry, phases: &Phases) -> KvFound {
    let serving = phases.serving_phase(r);
    // Per-request caches belong to requests still in flight when the report was written.
    let in_flight_from = phases
        .requests
        .iter()
        .filter(|q| q.done_ms.is_none())
        .map(|q| q.start_marker as u32 + 1)
        .min();
    let mut by_size: BTreeMap<u64, Vec<&LiveAlloc>> = BTreeMap::new();
    for a in r
        .live
        .allocations
        .iter()
        .filter(|a| a.device == device && a.api.space() == Space::Device)
    {
        by_size.entry(a.size).or_default().push(a);
    }
    let mut found = KvFound::default();
    let mut candidates: Vec<(KvGroup, Vec<u64>)> = Vec::new();
    for (size, rows) in by_size {
        if CACHING_SEGMENTS.contains(&size) {
            continue;
        }
        let n = rows.len() as u64;
        let made_while_serving = serving.is_some_and(|s| rows.iter().all(|a| a.phase >= s));
        let per_layer = |k: u64| g.layers_per_stage.iter().any(|&l| l > 0 && n == k * l);
        let whole = |unit: u64| unit > 0 && size % unit == 0;
        let group = if !made_while_serving && per_layer(1) && whole(g.page) {
            Some(KvGroup {
                layout: Layout::Paged,
                tensors: n,
                tensor_bytes: size,
                tokens: size / g.page * g.block,
                made_t_ms: 0.0,
            })
        } else if !made_while_serving && per_layer(if g.mla { 1 } else { 2 }) && whole(g.token_row)
        {
            Some(KvGroup {
                layout: Layout::TokenPool,
                tensors: n,
                tensor_bytes: size,
                tokens: (size / g.token_row).saturating_sub(1),
                made_t_ms: 0.0,
            })
        } else if in_flight_from.is_some_and(|p| rows.iter().all(|a| a.phase >= p))
            && whole(g.token_row)
        {
            Some(KvGroup {
                layout: Layout::PerRequest,
                tensors: n,
                tensor_bytes: size,
                tokens: size / g.token_row,
                made_t_ms: 0.0,
            })
        } else {
            None
        };
        if let Some(mut grp) = group {
            grp.made_t_ms = rows.iter().map(|a| a.t_ms).fold(f64::INFINITY, f64::min);
            candidates.push((grp, rows.iter().map(|a| a.address).collect::<Vec<_>>()));
        }
    }
    // One preallocated cache per layout: per-layer weights (a fused qkv, o,
    // gate_up or down projection: one tensor per layer, often a whole number
    // of pages) look like it too. The cache is the largest such group (it
    // takes what the weights and the profile leave), the latest made on a tie.
    for layout in [Layout::Paged, Layout::TokenPool] {
        let best = candidates
            .iter()
            .filter(|(g, _)| g.layout == layout)
            .max_by(|a, b| {
                a.0.bytes()
                    .cmp(&b.0.bytes())
                    .then(a.0.made_t_ms.total_cmp(&b.0.made_t_ms))
            })
            .map(|(g, _)| (g.tensor_bytes, g.tensors));
        candidates.retain(|(g, _)| g.layout != layout || Some((g.tensor_bytes, g.tensors)) == best);
    }
    for (grp, addresses) in candidates {
        found.addresses.extend(addresses);
        found.groups.push(grp);
    }
    found
}

#[cfg(test)]
mod tests {
    use crate::check::testkit::*;

    /// llama-3.1-8b: 32 layers; a layer's page holds 16 tokens of K and V of
    /// 8 heads x 128 x 2 B: 64 KiB.
    #[test]
    fn per_layer_weights_are_not_the_paged_cache() {
        let page = 64 * 1024;
        let r = ReportBuilder::new()
            .allocs(768 * page, 32) // one fused projection per layer (48 MiB): whole pages
            .allocs(1792 * page, 32) // another (112 MiB)
            .allocs(27_520 * page, 32) // the KV cache: 27,520 pages per layer
            .marker("serve")
            .build();
        let kv = with_ctx(
            &r,
            Some(&llama(80 * GIB, 8192, 1)),
            Default::default(),
            |c| c.kv.clone(),
        );
        let paged: Vec<(u64, u64)> = kv
            .groups
            .iter()
            .map(|g| (g.tensors, g.tensor_bytes))
            .collect();
        assert_eq!(paged, [(32, 27_520 * page)], "{kv:?}");
        assert_eq!(kv.capacity_tokens(), Some(27_520 * 16));
    }

    /// Without a model, vLLM's cache is still told from the weights by its
    /// shape: equal per-layer tensors made after them.
    #[test]
    fn a_preallocated_cache_is_recognised_by_shape() {
        let page = 64 * 1024;
        let r = ReportBuilder::new()
            .allocs(768 * page, 32) // per-layer weights, loaded first
            .allocs(1792 * page, 32)
            .allocs(27_520 * page, 32) // the KV cache
            .marker("serve")
            .build();
        let kv = with_ctx(&r, None, Default::default(), |c| c.kv.clone());
        let shape: Vec<(u64, u64)> = kv
            .groups
            .iter()
            .map(|g| (g.tensors, g.tensor_bytes))
            .collect();
        assert_eq!(shape, [(32, 27_520 * page)], "{kv:?}");
        assert_eq!(kv.capacity_tokens(), None);
        // Weights alone (one tensor per layer, from the first layer on) are not a cache.
        let mut b = ReportBuilder::new();
        for _ in 0..32 {
            b = b.alloc(768 * page).alloc(1792 * page);
        }
        let r = b.marker("serve").build();
        assert!(
            super::by_shape(&r, 0, &crate::check::markers::Phases::of(&r))
                .groups
                .is_empty()
        );
    }

    /// Equal tensors with nothing before them (the H200 fixture's loop of
    /// 8 GiB tensors until out of memory) follow no weights: not a cache.
    #[test]
    fn equal_tensors_alone_are_not_a_cache() {
        let r = ReportBuilder::new().allocs(8 * GIB, 17).build();
        let phases = crate::check::markers::Phases::of(&r);
        assert!(super::by_shape(&r, 0, &phases).groups.is_empty());
        // The same after one weight tensor is a cache.
        let r = ReportBuilder::new().alloc(GIB).allocs(8 * GIB, 17).build();
        let phases = crate::check::markers::Phases::of(&r);
        assert_eq!(super::by_shape(&r, 0, &phases).groups.len(), 1);
    }

    /// On the healthy H200 fixture (a 4-layer model under PyTorch's caching
    /// allocator), 8 small-pool segments of 2 MiB are not a token pool.
    #[test]
    fn caching_allocator_segments_are_not_a_cache() {
        let r = ReportBuilder::new()
            .allocs(20 * MIB, 2)
            .allocs(2 * MIB, 64) // two per layer of the 32, whole token rows
            .marker("serve")
            .build();
        let kv = with_ctx(
            &r,
            Some(&llama(80 * GIB, 8192, 1)),
            Default::default(),
            |c| c.kv.clone(),
        );
        assert!(kv.groups.is_empty(), "{kv:?}");
    }
}
