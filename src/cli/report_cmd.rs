//! `kvscope report FILE [--json | --html OUT]`.

use super::engine_args::EngineArgs;
use super::error::{refuse_overwrite, CliError, Result};
use super::model_args::{model_ctx, ModelArgs};
use crate::check::{context::Thresholds, job::check, kind::Severity};
use crate::load::load;
use crate::render::{html, summary};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A report file (kvscope-*.json).
    pub file: PathBuf,
    /// Print the report as JSON (normalised) instead of a summary.
    #[arg(long, conflicts_with = "html")]
    pub json: bool,
    /// Write a self-contained HTML page: timeline, breakdown, findings.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// How many of the largest live allocations to list (at least 1).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,
    /// For --html: the model to check against (optional).
    #[command(flatten)]
    pub model: ModelArgs,
    /// For --html: the engine's logged plan against the trace (a table on the page).
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run(a: &ReportArgs) -> Result<i32> {
    if let Some(out) = a.html.as_deref() {
        refuse_overwrite("--html", out, &a.file, "report.html")?;
    }
    // A model given is checked even where only --html uses it: a typo is
    // an error, never silently ignored.
    let mut notes = Vec::new();
    let ctx = model_ctx(&a.model, 1, None, None, &mut notes)?;
    let plan = a.engine.plan()?;
    let r = load(&a.file)?;
    if let Some(out) = &a.html {
        let mut result = check(
            vec![(a.file.display().to_string(), r.clone())],
            ctx.as_ref(),
            Thresholds::default(),
            Severity::Critical,
        );
        a.engine
            .apply(plan.as_ref(), &mut result, Severity::Critical);
        let page = html::render(&r, &result).map_err(CliError::input)?;
        super::private::write(out, page.as_bytes())?;
        println!("wrote {}", out.display());
    } else if a.json {
        let s = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
        println!("{s}");
    } else {
        print!("{}", summary::render(&r, a.top as usize));
    }
    Ok(0)
}
