//! The shapes a model's layers come in, shared by the config reader
//! (`model`), the layer pattern (`layout`), the weights (`params`) and the
//! KV arithmetic (`cache`), and the parameters of a layer (`params`, `ffn`). The bottom of the KV model: it imports none of them.

/// What one decoder layer keeps while a sequence is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Attention over the whole context: KV for every token.
    Full,
    /// Sliding-window attention: KV for the last `window` tokens at most.
    Sliding(u64),
    /// A Mamba or linear-attention layer: a fixed state per sequence, no KV.
    State,
}

/// Multi-head latent attention (DeepSeek-V2/V3): one latent per token per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mla {
    pub kv_lora_rank: u64,
    pub qk_rope_head_dim: u64,
    pub qk_nope_head_dim: u64,
    pub v_head_dim: u64,
    pub q_lora_rank: Option<u64>,
}

/// Parameters of one decoder layer: "linear" ones (what a quantization
/// changes) and the rest (norms, biases, routers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerParams {
    pub linear: u128,
    pub other: u128,
}
