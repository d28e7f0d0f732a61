//! The model and deployment flags that `fit`, `check`, `report --html` and
//! `demo` share, and the check's model context built from them. Its own
//! module so that no command imports another.

use super::error::{CliError, Result};
use crate::check::context::ModelCtx;
use crate::kv::fit::FitInput;
use crate::kv::{source, Dtype, Model, Parallel};
use crate::units::parse_size;
use clap::Args;

/// The model and deployment flags shared by `fit` and `check`.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// A preset name (see --list), a config.json, or a directory holding one.
    #[arg(long)]
    pub model: Option<String>,
    /// GPU memory per GPU: 80GiB, 80GB, 81920MiB or bytes.
    #[arg(long, value_parser = parse_size, default_value = "80GiB", allow_hyphen_values = true)]
    pub gpu_mem: u64,
    /// GPUs in the deployment (default tp x pp; more are data-parallel replicas).
    #[arg(long, allow_negative_numbers = true)]
    pub gpus: Option<u64>,
    /// Tensor-parallel size.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub tp: u64,
    /// Pipeline-parallel size.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub pp: u64,
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

impl ModelArgs {
    pub fn load(&self) -> Result<Model> {
        let spec = self.model.as_deref().ok_or_else(|| {
            CliError::input(
                "--model is required (a preset, see kvscope fit --list, or a config.json)",
            )
        })?;
        source::load(spec).map_err(CliError::input)
    }

    pub fn input(&self, context: u64, concurrency: u64) -> Result<FitInput> {
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
            tp: self.tp,
            pp: self.pp,
        };
        Ok(FitInput {
            context,
            concurrency,
            gpu_mem: self.gpu_mem,
            gpus: self.gpus.unwrap_or(self.tp.max(1) * self.pp.max(1)),
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

/// The model context, when --model is given; one report per rank sets --tp.
pub fn model_ctx(
    m: &ModelArgs,
    processes: usize,
    context: Option<u64>,
    concurrency: Option<u64>,
    notes: &mut Vec<String>,
) -> Result<Option<ModelCtx>> {
    if m.model.is_none() {
        return Ok(None);
    }
    let model = m.load()?;
    let mut args = m.clone();
    if processes > 1 && m.tp == 1 && m.pp == 1 && m.gpus.is_none() {
        args.tp = processes as u64;
        notes.push(format!("{processes} processes checked as the tensor-parallel ranks of one job (--tp {processes}); give --tp / --pp otherwise"));
    }
    let mut input = args.input(context.unwrap_or(0), concurrency.unwrap_or(1))?;
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
    Ok(Some(ModelCtx::new(model, input)))
}
