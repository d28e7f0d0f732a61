//! `kvscope check REPORT... --model M`.

use super::engine_args::EngineArgs;
use super::error::{CliError, Result};
use super::model_args::{model_ctx, ModelArgs};
use crate::check::context::Thresholds;
use crate::check::job::check;
use crate::check::kind::Severity;
use crate::load::load;
use crate::render::{json, text};
use crate::units::parse_size;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Report files: of one process, of the ranks of one job, or of separate runs (each checked on its own).
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The context the deployment must serve (tokens per request).
    #[arg(long, allow_negative_numbers = true)]
    pub context: Option<u64>,
    /// Concurrent requests of --context it must serve.
    #[arg(long, allow_negative_numbers = true)]
    pub concurrency: Option<u64>,
    /// Utilisation warning threshold (fraction of device memory).
    #[arg(long, default_value_t = 0.8)]
    pub util_warn: f64,
    /// Utilisation critical threshold.
    #[arg(long, default_value_t = 0.9)]
    pub util_crit: f64,
    /// Memory held free by pools beyond which fragmentation is reported.
    #[arg(long, value_parser = parse_size, default_value = "2GiB", allow_hyphen_values = true)]
    pub frag: u64,
    /// Requests in flight, as a fraction of the most the KV cache holds, that raise an alert.
    #[arg(long, default_value_t = 0.8)]
    pub concurrency_frac: f64,
    /// A request this many times the average length is a spike.
    #[arg(long, default_value_t = 2.0)]
    pub spike_factor: f64,
    /// Growth per request below this is not a leak.
    #[arg(long, value_parser = parse_size, default_value = "1MiB", allow_hyphen_values = true)]
    pub leak_min: u64,
    /// Weights this many times the model's are "loaded twice".
    #[arg(long, default_value_t = 1.5)]
    pub weights_factor: f64,
    /// Exit with status 1 when a finding is at or above this level.
    #[arg(long, default_value = "critical", value_parser = fail_on())]
    pub fail_on: Severity,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `--fail-on`: the severities by their JSON names. clap lists and checks
/// the names (its usual one-line error and help); `Severity` parses itself,
/// so the check knows nothing of clap.
fn fail_on() -> impl clap::builder::TypedValueParser<Value = Severity> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Severity::NAMES).try_map(|s| s.parse::<Severity>())
}

impl CheckArgs {
    fn thresholds(&self) -> Result<Thresholds> {
        for (v, flag) in [
            (self.util_warn, "--util-warn"),
            (self.util_crit, "--util-crit"),
            (self.concurrency_frac, "--concurrency-frac"),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(CliError::input(format!("{flag} {v} must be in (0, 1]")));
            }
        }
        if self.util_warn > self.util_crit {
            return Err(CliError::input("--util-warn must not exceed --util-crit"));
        }
        if self.spike_factor <= 1.0 || self.weights_factor <= 1.0 {
            return Err(CliError::input(
                "--spike-factor and --weights-factor must be above 1",
            ));
        }
        Ok(Thresholds {
            util_warn: self.util_warn,
            util_crit: self.util_crit,
            frag_bytes: self.frag,
            concurrency_frac: self.concurrency_frac,
            spike_factor: self.spike_factor,
            leak_bytes: self.leak_min,
            weights_factor: self.weights_factor,
        })
    }
}

pub fn run(a: &CheckArgs) -> Result<i32> {
    let thresholds = a.thresholds()?;
    if a.context == Some(0) || a.concurrency == Some(0) {
        return Err(CliError::input(
            "--context and --concurrency must be at least 1",
        ));
    }
    let plan = a.engine.plan()?;
    let mut reports = Vec::new();
    for p in &a.reports {
        reports.push((p.display().to_string(), load(p)?));
    }
    let mut notes = Vec::new();
    // The ranks of each job set --tp when it is not given (check::runs).
    let ctx = model_ctx(&a.model, 1, a.context, a.concurrency, &mut notes)?;
    let mut result = check(reports, ctx.as_ref(), thresholds, a.fail_on);
    result.notes.extend(notes);
    a.engine.apply(plan.as_ref(), &mut result, a.fail_on);
    if a.json {
        println!("{}", json::render(&result)?);
    } else {
        print!("{}", text::render_with(&result, colour()));
    }
    Ok(result.exit_status)
}

/// Severity labels in colour only on a terminal, and never under NO_COLOR
/// (no-color.org: set and not empty).
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
