//! The model and deployment flags that `fit`, `check`, `report --html` and
//! `demo` share, and the check's model context built from them. Its own
//! module so that no command imports another.

use super::error::{CliError, Result};
use crate::check::context::ModelCtx;
use crate::kv::fit::FitInput;
use crate::kv::{source, Dtype, Model, Parallel};
use crate::units::{count, parse_gpu_mem, parse_size};
use clap::Args;

/// The model and deployment flags shared by `fit` and `check`.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A local directory or config.json, a Hugging Face id (ORG/NAME) in the local hub cache, or a preset name (`kvscope fit --list` lists them); a local path wins over a preset.
    #[arg(long)]
    pub model: Option<String>,
    /// GPU memory per GPU, with a unit: 80GiB, 80GB (SI: 74.5 GiB), or MiB as nvidia-smi prints it (an H100 80GB is 81559MiB).
    #[arg(long, value_parser = parse_gpu_mem, default_value = "80GiB", allow_hyphen_values = true)]
    pub gpu_mem: u64,
    /// GPUs in the deployment (default tp x pp; more are data-parallel replicas).
    #[arg(long, allow_negative_numbers = true)]
    pub gpus: Option<u64>,
    /// Tensor-parallel size (default 1; `check` takes the ranks of one job when not given).
    #[arg(long, allow_negative_numbers = true)]
    pub tp: Option<u64>,
    /// Pipeline-parallel size (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub pp: Option<u64>,
    /// KV cache dtype: auto (the model's; float32 as bfloat16), bf16, fp16, fp8, int8.
    #[arg(long, default_value = "auto")]
    pub kv_dtype: String,
    /// Paged-attention block size in tokens.
    #[arg(long, default_value_t = 16, allow_negative_numbers = true)]
    pub block_size: u64,
    /// The engine's share of GPU memory (vLLM's --gpu-memory-utilization).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub gpu_util: f64,
    /// Engine budget: activation peak per GPU (default: estimated from --max-batched-tokens).
    #[arg(long, value_parser = parse_size, allow_hyphen_values = true)]
    pub activation: Option<u64>,
    /// Engine budget: memory outside PyTorch per GPU (default 512 MiB, +512 MiB with tp or pp > 1).
    #[arg(long, value_parser = parse_size, allow_hyphen_values = true)]
    pub non_torch: Option<u64>,
    /// Tokens in the engine's profile batch (vLLM's max_num_batched_tokens).
    #[arg(long, default_value_t = 8192)]
    pub max_batched_tokens: u64,
    /// Simple audit: CUDA context per GPU.
    #[arg(long, value_parser = parse_size, default_value = "512MiB", allow_hyphen_values = true)]
    pub context_mem: u64,
    /// Simple audit: allocator overhead per GPU (default 5% of GPU memory).
    #[arg(long, value_parser = parse_size, allow_hyphen_values = true)]
    pub overhead: Option<u64>,
}

/// Tokens in flight (context x concurrency) that any model is checked for:
/// 2^40, a thousand times a 1M-token context at a thousand requests.
const MAX_TOKENS: u64 = 1 << 40;

impl ModelArgs {
    pub fn load(&self) -> Result<Model> {
        let spec = self.model.as_deref().ok_or_else(|| {
            CliError::input(
                "--model is required (a config.json or directory, a Hugging Face id in the local cache, or a preset: see kvscope fit --list)",
            )
        })?;
        source::load(spec).map_err(CliError::input)
    }

    pub fn input(&self, context: u64, concurrency: u64) -> Result<FitInput> {
        // Beyond this the byte arithmetic saturates instead of failing
        // ("needed 16777216 TiB ... short by 8388608 TiB").
        if context.saturating_mul(concurrency) > MAX_TOKENS {
            return Err(CliError::input(format!(
                "--context {} x --concurrency {} is more than {} tokens in flight: no deployment holds that many",
                count(context),
                count(concurrency),
                count(MAX_TOKENS)
            )));
        }
        let kv_dtype = match self.kv_dtype.to_ascii_lowercase().as_str() {
            "auto" => None,
            s => Some(
                Dtype::parse(s)
                    .filter(|d| *d != Dtype::F32)
                    .ok_or_else(|| {
                        CliError::input(format!(
                            "--kv-dtype {s}: use auto, bf16, fp16, fp8 or int8"
                        ))
                    })?,
            ),
        };
        let par = Parallel {
            tp: self.tp.unwrap_or(1),
            pp: self.pp.unwrap_or(1),
        };
        Ok(FitInput {
            context,
            concurrency,
            gpu_mem: self.gpu_mem,
            gpus: self.gpus.unwrap_or(par.tp.max(1) * par.pp.max(1)),
            par,
            kv_dtype,
            block: self.block_size,
            gpu_util: self.gpu_util,
            activation: self.activation,
            non_torch: self.non_torch,
            max_batched_tokens: self.max_batched_tokens,
            context_mem: self.context_mem,
            overhead: self.overhead,
        })
    }
}

/// Whether the deployment's shape was given (`--tp`, `--pp` or `--gpus`,
/// `--tp 1` included): then the check never guesses it from the reports.
pub fn parallel_given(m: &ModelArgs) -> bool {
    m.tp.is_some() || m.pp.is_some() || m.gpus.is_some()
}

/// The model context, when --model is given. The check itself takes the
/// ranks of each job as its tensor-parallel size when `--tp`, `--pp` and
/// `--gpus` are all absent (`check::job`); `_processes` is no longer used
/// for that guess (separate runs are not ranks).
pub fn model_ctx(
    m: &ModelArgs,
    _processes: usize,
    context: Option<u64>,
    concurrency: Option<u64>,
    _notes: &mut Vec<String>,
) -> Result<Option<ModelCtx>> {
    if m.model.is_none() {
        return Ok(None);
    }
    let model = m.load()?;
    let mut input = m.input(context.unwrap_or(0), concurrency.unwrap_or(1))?;
    // The check's own context may be 0 (not given); validate the rest with 1.
    crate::kv::fit::fit(
        &model,
        &crate::kv::fit::FitInput {
            context: 1,
            concurrency: 1,
            ..input.clone()
        },
    )
    .map_err(CliError::input)?;
    input.context = context.unwrap_or(0);
    let mut ctx = ModelCtx::new(model, input);
    ctx.par_given = parallel_given(m);
    Ok(Some(ctx))
}
