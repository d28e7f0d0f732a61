//! Will it fit: the memory budget of one GPU, two ways, against the KV cache
//! a workload needs.
//!
//! - The serving engine's way (vLLM's): GPU memory x gpu_util, minus the
//!   weights on the GPU, the activation peak of a profile run and non-torch
//!   memory (CUDA context, NCCL, cuBLAS workspaces), is what the KV cache gets.
//! - The simple audit: GPU memory minus weights, the CUDA context and the
//!   allocator's overhead.
//!
//! With pipeline parallelism every stage is checked and the tightest one
//! answers; with more GPUs than tp x pp, the extra are data-parallel replicas
//! that share the requests.

use super::cache::{self, Parallel, Share};
use super::dtype::Dtype;
use super::model::Model;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct FitInput {
    pub context: u64,
    pub concurrency: u64,
    pub gpu_mem: u64,
    pub gpus: u64,
    pub par: Parallel,
    /// None: the model's dtype (float32 served as bfloat16).
    pub kv_dtype: Option<Dtype>,
    pub block: u64,
    pub gpu_util: f64,
    /// Engine budget: the activation peak; None estimates it.
    pub activation: Option<u64>,
    /// Engine budget: memory outside PyTorch; None: the default.
    pub non_torch: Option<u64>,
    pub max_batched_tokens: u64,
    /// Simple audit: the CUDA context.
    pub context_mem: u64,
    /// Simple audit: allocator overhead; None: 5% of GPU memory.
    pub overhead: Option<u64>,
}

impl Default for FitInput {
    fn default() -> Self {
        FitInput {
            context: 0,
            concurrency: 1,
            gpu_mem: 80 << 30,
            gpus: 1,
            par: Parallel::NONE,
            kv_dtype: None,
            block: 16,
            gpu_util: 0.9,
            activation: None,
            non_torch: None,
            max_batched_tokens: 8192,
            context_mem: CONTEXT_DEFAULT,
            overhead: None,
        }
    }
}

/// What a CUDA context costs on a recent GPU (H100: about 500 MiB).
pub const CONTEXT_DEFAULT: u64 = 512 << 20;
/// NCCL's buffers and communicators when tensors are split across GPUs.
pub const NCCL_DEFAULT: u64 = 512 << 20;
/// Sequences whose logits a batch computes at most (vLLM's max_num_seqs default).
const MAX_SEQS: u64 = 256;

#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    pub gpu_util: f64,
    pub activation_bytes: u64,
    pub activation_estimated: bool,
    pub non_torch_bytes: u64,
    /// The engine's KV budget per GPU (may be negative).
    pub engine_available_bytes_per_gpu: i64,
    pub audit_context_bytes: u64,
    pub audit_overhead_bytes: u64,
    pub audit_available_bytes_per_gpu: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub model: String,
    pub model_type: String,
    pub dtype: String,
    pub kv_dtype: String,
    pub layers: u64,
    pub attention_layers: u64,
    pub state_layers: u64,
    pub kv_heads: u64,
    pub kv_heads_per_gpu: u64,
    pub head_dim: u64,
    pub mla: bool,
    pub tp: u64,
    pub pp: u64,
    pub gpus: u64,
    pub replicas: u64,
    pub context: u64,
    pub concurrency: u64,
    pub block_size: u64,
    pub gpu_mem_bytes: u64,
    /// Whole model, all attention layers, no window cap.
    pub kv_bytes_per_token: u64,
    /// The GPU holding the most KV per token.
    pub kv_bytes_per_token_per_gpu: u64,
    /// One request of `context` tokens, whole model (windows and blocks applied).
    pub kv_bytes_per_request: u64,
    pub kv_bytes_per_request_per_gpu: u64,
    pub state_bytes_per_sequence: u64,
    pub state_bytes_per_sequence_per_gpu: u64,
    pub weights_params: u64,
    pub weights_bytes: u64,
    pub weights_bytes_per_gpu: u64,
    /// "config" (parameters counted) or "safetensors index" (metadata.total_size).
    pub weights_source: String,
    pub quantization: Option<String>,
    pub budget: Budget,
    /// The engine budget on the binding GPU.
    pub available_bytes_per_gpu: i64,
    pub kv_needed_bytes_per_gpu: u64,
    pub will_fit: bool,
    pub headroom_bytes_per_gpu: i64,
    /// Concurrent requests of `context` tokens the deployment can hold.
    pub max_concurrency: u64,
    /// Longest request at `concurrency` (per replica share) that fits.
    pub max_context: u64,
    /// "memory", or "model" when max_position_embeddings is reached first.
    pub max_context_limited_by: String,
    /// The pipeline stage whose GPU binds (0 without pipeline parallelism).
    pub binding_stage: u64,
    pub notes: Vec<String>,
}

/// What one pipeline stage's GPU holds.
struct Stage {
    share: Share,
    weights: u64,
}

fn stages(m: &Model, par: Parallel, dtype: Dtype) -> Vec<Stage> {
    let ranges = par.stages(m.layers.len());
    let n = ranges.len();
    let total_params = m.params.bytes(dtype).max(1);
    ranges
        .into_iter()
        .enumerate()
        .map(|(i, layers)| {
            let counted = m
                .params
                .stage_bytes(dtype, layers.clone(), i == 0, i + 1 == n);
            // With a checkpoint size, split it in proportion to the counted parameters.
            let stage_bytes = match m.checkpoint_bytes {
                Some(total) => (total as f64 * counted as f64 / total_params as f64).round() as u64,
                None => counted,
            };
            Stage {
                share: Share {
                    layers,
                    rank_of: Some(par),
                },
                weights: stage_bytes.div_ceil(par.tp),
            }
        })
        .collect()
}

/// The activation peak of a profile run over `tokens` tokens, per GPU:
/// hidden states and the MLP's two widest intermediates for every token, plus
/// float32 logits for up to 256 sequences. An estimate; measure it.
fn activation_estimate(m: &Model, tokens: u64, tp: u64, dtype: Dtype) -> u64 {
    let per_token = (m.params.token_inter / tp)
        .saturating_mul(2)
        .saturating_add(6 * m.hidden);
    tokens
        .saturating_mul(per_token)
        .saturating_mul(dtype.bytes())
        .saturating_add(tokens.min(MAX_SEQS) * m.params.vocab * 4)
}

/// Bytes as a signed figure (budgets go negative); beyond i64, the largest.
fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

pub fn fit(m: &Model, inp: &FitInput) -> Result<Fit, String> {
    let par = inp.par;
    par.check(m)?;
    if inp.context == 0 {
        return Err("--context must be at least 1".into());
    }
    if inp.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if inp.gpu_mem == 0 {
        return Err("--gpu-mem must be positive".into());
    }
    if inp.block == 0 {
        return Err("--block-size must be at least 1".into());
    }
    if !(inp.gpu_util > 0.0 && inp.gpu_util <= 1.0) {
        return Err(format!("--gpu-util {} must be in (0, 1]", inp.gpu_util));
    }
    let per_replica = par.tp.saturating_mul(par.pp);
    if inp.gpus == 0 {
        return Err("--gpus must be at least 1".into());
    }
    if !inp.gpus.is_multiple_of(per_replica) {
        return Err(format!(
            "--gpus {} is not a multiple of tp x pp = {per_replica}",
            inp.gpus
        ));
    }
    let replicas = inp.gpus / per_replica;
    let dtype = m.dtype.served();
    let kv = inp.kv_dtype.unwrap_or(dtype);
    let whole = Share::whole(m);
    let stages = stages(m, par, dtype);

    let activation = inp
        .activation
        .unwrap_or_else(|| activation_estimate(m, inp.max_batched_tokens, par.tp, dtype));
    let non_torch = inp
        .non_torch
        .unwrap_or(CONTEXT_DEFAULT + if per_replica > 1 { NCCL_DEFAULT } else { 0 });
    let overhead = inp.overhead.unwrap_or(inp.gpu_mem / 20);
    let engine_total = (inp.gpu_mem as f64 * inp.gpu_util) as i64;
    let conc = inp.concurrency.div_ceil(replicas);

    // Every stage's answer; the stage that holds the fewest requests binds.
    struct Answer {
        stage: usize,
        available: i64,
        per_seq: u64,
        max_conc: u64,
    }
    let answers: Vec<Answer> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let available = engine_total
                .saturating_sub(signed(s.weights))
                .saturating_sub(signed(activation))
                .saturating_sub(signed(non_torch));
            let per_seq = cache::per_request(m, kv, &s.share, inp.context, inp.block)
                .saturating_add(cache::state_per_sequence(m, &s.share));
            let max_conc = if available <= 0 {
                0
            } else {
                available as u64 / per_seq.max(1)
            };
            Answer {
                stage: i,
                available,
                per_seq,
                max_conc,
            }
        })
        .collect();
    let bind = answers
        .iter()
        .min_by_key(|a| (a.max_conc, a.stage))
        .ok_or("no stages")?;
    let s = &stages[bind.stage];
    let needed = conc.saturating_mul(bind.per_seq);
    let will_fit = answers
        .iter()
        .all(|a| a.available >= 0 && conc.saturating_mul(a.per_seq) <= a.available as u64);

    // The longest context every stage can hold `conc` requests of.
    let fits = |tokens: u64| {
        stages.iter().zip(&answers).all(|(s, a)| {
            let per = cache::per_request(m, kv, &s.share, tokens, inp.block)
                .saturating_add(cache::state_per_sequence(m, &s.share));
            a.available >= 0 && conc.saturating_mul(per) <= a.available as u64
        })
    };
    let limit = m.max_position_embeddings.unwrap_or(1 << 31);
    let (max_context, limited_by) = if fits(limit) {
        (limit, "model")
    } else if !fits(1) {
        (0, "memory")
    } else {
        let (mut lo, mut hi) = (1u64, limit);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo, "memory")
    };

    let mut notes = m.notes.clone();
    if inp.context > m.max_position_embeddings.unwrap_or(u64::MAX) {
        notes.push(format!(
            "--context {} is beyond the model's max_position_embeddings {}",
            inp.context,
            m.max_position_embeddings.unwrap_or(0)
        ));
    }
    let max_stage_weights = stages.iter().map(|s| s.weights).max().unwrap_or(0);
    let audit_available = signed(inp.gpu_mem)
        .saturating_sub(signed(max_stage_weights))
        .saturating_sub(signed(inp.context_mem))
        .saturating_sub(signed(overhead));
    let per_gpu_token = stages
        .iter()
        .map(|s| cache::per_token(m, kv, &s.share))
        .max()
        .unwrap_or(0);
    let state_layers = m.layers.len() - m.attention_layers();
    Ok(Fit {
        model: m.name.clone(),
        model_type: m.model_type.clone(),
        dtype: dtype.name().into(),
        kv_dtype: kv.name().into(),
        layers: m.num_layers(),
        attention_layers: m.attention_layers() as u64,
        state_layers: state_layers as u64,
        kv_heads: if m.mla.is_some() { 1 } else { m.kv_heads },
        kv_heads_per_gpu: if m.mla.is_some() {
            1
        } else {
            par.kv_heads_per_rank(m)
        },
        head_dim: m.head_dim,
        mla: m.mla.is_some(),
        tp: par.tp,
        pp: par.pp,
        gpus: inp.gpus,
        replicas,
        context: inp.context,
        concurrency: inp.concurrency,
        block_size: inp.block,
        gpu_mem_bytes: inp.gpu_mem,
        kv_bytes_per_token: cache::per_token(m, kv, &whole),
        kv_bytes_per_token_per_gpu: per_gpu_token,
        kv_bytes_per_request: cache::per_request(m, kv, &whole, inp.context, inp.block),
        kv_bytes_per_request_per_gpu: cache::per_request(m, kv, &s.share, inp.context, inp.block),
        state_bytes_per_sequence: cache::state_per_sequence(m, &whole),
        state_bytes_per_sequence_per_gpu: cache::state_per_sequence(m, &s.share),
        weights_params: m.params.total(),
        weights_bytes: m.checkpoint_bytes.unwrap_or_else(|| m.params.bytes(dtype)),
        weights_bytes_per_gpu: s.weights,
        weights_source: if m.checkpoint_bytes.is_some() {
            "safetensors index"
        } else {
            "config"
        }
        .into(),
        quantization: m.params.quant.as_ref().map(|q| q.method.clone()),
        budget: Budget {
            gpu_util: inp.gpu_util,
            activation_bytes: activation,
            activation_estimated: inp.activation.is_none(),
            non_torch_bytes: non_torch,
            engine_available_bytes_per_gpu: bind.available,
            audit_context_bytes: inp.context_mem,
            audit_overhead_bytes: overhead,
            audit_available_bytes_per_gpu: audit_available,
        },
        available_bytes_per_gpu: bind.available,
        kv_needed_bytes_per_gpu: needed,
        will_fit,
        headroom_bytes_per_gpu: bind.available.saturating_sub(signed(needed)),
        max_concurrency: bind.max_conc.saturating_mul(replicas),
        max_context,
        max_context_limited_by: limited_by.into(),
        binding_stage: bind.stage as u64,
        notes,
    })
}
