//! `kvscope fit`: will a model and workload fit on these GPUs.

use super::error::{CliError, Result};
use super::model_args::ModelArgs;
use crate::kv::fit::{self, Fit, FitInput};
use crate::kv::source;
use crate::units::{bytes, count};
use clap::Args;
use std::fmt::Write;

#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 when the workload fits, 1 when it does not (the verdict says by how much), 2 on bad input."
)]
pub struct FitArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tokens per request (default: the model's max_position_embeddings).
    #[arg(long, allow_negative_numbers = true)]
    pub context: Option<u64>,
    /// Concurrent requests.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub concurrency: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// List the built-in presets.
    #[arg(long)]
    pub list: bool,
}

pub fn list() -> String {
    let mut out = String::from("presets (--model NAME):\n");
    for (name, _) in source::PRESETS {
        if let Some(m) = source::preset(name) {
            let f = fit::fit(
                &m,
                &FitInput {
                    context: 1,
                    ..FitInput::default()
                },
            );
            let per_token = f.map(|f| bytes(f.kv_bytes_per_token)).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {name:<22} {:<10} {:>3} layers, {:>3} KV heads x {:>3}{}, {per_token} KV per token",
                m.model_type,
                m.num_layers(),
                m.kv_heads,
                m.head_dim,
                if m.mla.is_some() { " (MLA)" } else { "" }
            );
        }
    }
    out
}

fn signed(n: i64) -> String {
    if n < 0 {
        format!("-{}", bytes(n.unsigned_abs()))
    } else {
        bytes(n as u64)
    }
}

pub fn render(f: &Fit) -> String {
    let mut o = String::new();
    let gpu = bytes(f.gpu_mem_bytes);
    let _ = writeln!(
        o,
        "{} ({}, weights {}, KV {}) on {} x {gpu}: tp {}, pp {}{}",
        f.model,
        if f.model_type.is_empty() {
            "?"
        } else {
            &f.model_type
        },
        f.dtype,
        f.kv_dtype,
        f.gpus,
        f.tp,
        f.pp,
        if f.replicas > 1 {
            format!(", {} replicas", f.replicas)
        } else {
            String::new()
        }
    );
    let geometry = if f.mla {
        format!("{} layers x one MLA latent", f.attention_layers)
    } else {
        format!(
            "{} attention layers x 2 (K, V) x {} KV heads x {}",
            f.attention_layers, f.kv_heads, f.head_dim
        )
    };
    let per_gpu = if f.tp * f.pp > 1 {
        format!("; {} per GPU", bytes(f.kv_bytes_per_token_per_gpu))
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "  KV per token       {} ({geometry}){per_gpu}",
        bytes(f.kv_bytes_per_token)
    );
    let _ = writeln!(
        o,
        "  one request        {} tokens hold {} of KV{}{}",
        count(f.context),
        bytes(f.kv_bytes_per_request),
        if f.state_bytes_per_sequence > 0 {
            format!(" + {} of fixed state", bytes(f.state_bytes_per_sequence))
        } else {
            String::new()
        },
        if f.tp * f.pp > 1 {
            format!(
                "; {} per GPU",
                bytes(f.kv_bytes_per_request_per_gpu + f.state_bytes_per_sequence_per_gpu)
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        o,
        "  weights            {} ({} params, from the {}{}); {} per GPU",
        bytes(f.weights_bytes),
        count(f.weights_params),
        f.weights_source,
        f.quantization
            .as_ref()
            .map(|q| format!(", {q}"))
            .unwrap_or_default(),
        bytes(f.weights_bytes_per_gpu)
    );
    let b = &f.budget;
    let _ = writeln!(
        o,
        "  engine budget      {gpu} x {} - weights {} - activations {}{} - non-torch {} = {} per GPU for KV",
        b.gpu_util,
        bytes(f.weights_bytes_per_gpu),
        bytes(b.activation_bytes),
        if b.activation_estimated { " (est.)" } else { "" },
        bytes(b.non_torch_bytes),
        signed(b.engine_available_bytes_per_gpu)
    );
    if b.engine_available_bytes_per_gpu < 0 {
        let _ = writeln!(
            o,
            "                     nothing is left for the KV cache: split the model over more GPUs (--tp, --pp) or quantize it"
        );
    }
    let _ = writeln!(
        o,
        "  simple audit       {gpu} - weights {} - context {} - overhead {} = {} per GPU",
        bytes(f.weights_bytes_per_gpu),
        bytes(b.audit_context_bytes),
        bytes(b.audit_overhead_bytes),
        signed(b.audit_available_bytes_per_gpu)
    );
    let share = if f.replicas > 1 {
        format!(" (of {} over {} replicas)", f.concurrency, f.replicas)
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "  needed             {} request{}{share} x {} = {} per GPU{}",
        f.concurrency.div_ceil(f.replicas),
        if f.concurrency.div_ceil(f.replicas) == 1 {
            ""
        } else {
            "s"
        },
        bytes(f.kv_bytes_per_request_per_gpu + f.state_bytes_per_sequence_per_gpu),
        bytes(f.kv_needed_bytes_per_gpu),
        if f.pp > 1 {
            format!(" (stage {} binds)", f.binding_stage)
        } else {
            String::new()
        }
    );
    for n in &f.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    let ctx = if f.max_context_limited_by == "model" {
        format!("{} tokens (the model's limit)", count(f.max_context))
    } else {
        format!("{} tokens", count(f.max_context))
    };
    let verdict = if f.will_fit {
        format!(
            "fits, {} headroom per GPU",
            bytes(f.headroom_bytes_per_gpu as u64)
        )
    } else {
        format!(
            "does NOT fit, short by {} per GPU",
            bytes(f.headroom_bytes_per_gpu.unsigned_abs())
        )
    };
    let _ = writeln!(
        o,
        "verdict: {verdict}; at most {} concurrent requests of {} tokens; {} requests can each have up to {ctx}",
        count(f.max_concurrency),
        count(f.context),
        count(f.concurrency)
    );
    o
}

pub fn run(a: &FitArgs) -> Result<i32> {
    if a.list {
        print!("{}", list());
        return Ok(0);
    }
    let m = a.model.load()?;
    let context = a
        .context
        .unwrap_or_else(|| m.max_position_embeddings.unwrap_or(4096));
    let mut f = fit::fit(&m, &a.model.input(context, a.concurrency)?).map_err(CliError::input)?;
    if a.context.is_none() && m.max_position_embeddings.is_none() {
        f.notes.push(
            "the config has no max_position_embeddings (nor a config-class default): --context defaults to 4,096".into(),
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", render(&f));
    }
    // Scripts can gate a deployment on it: 1 when it does not fit.
    Ok(if f.will_fit { 0 } else { 1 })
}
