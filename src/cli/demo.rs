//! `kvscope demo`: serve_sim under the shim on the stand-in CUDA, with a
//! leak planted, then the whole diagnosis against the model it simulates.

use super::error::{CliError, Result};
use super::locate;
use super::model_args::{model_ctx, ModelArgs};
use super::preload::{preload_value, reports_since};
use crate::check::{context::Thresholds, job::check, kind::Severity};
use crate::load::load;
use crate::render::{html, text};
use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

/// The simulated workload: Llama-3.1-8B's shape (serve_sim's defaults) in
/// vLLM's layout, 8 requests 4 at a time, 64 MiB kept after each.
const ARGS: &[&str] = &[
    "--pattern",
    "vllm",
    "--requests",
    "8",
    "--concurrency",
    "4",
    "--step-ms",
    "2",
    "--leak",
    "64MiB",
];
const MODEL: &str = "llama-3.1-8b";

pub fn run(keep: Option<PathBuf>) -> Result<i32> {
    let lib = locate::shim_library()?;
    let native = locate::native_dir()?;
    let (dir, temporary) = match keep {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("kvscope-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::input(format!("cannot create {}: {e}", dir.display())))?;
    let since = SystemTime::now() - std::time::Duration::from_secs(1);
    println!("== 1. a serving workload under the shim");
    println!("   LD_PRELOAD=libkvscope.so serve_sim {}", ARGS.join(" "));
    println!("   (Llama-3.1-8B's shape on one simulated 80 GiB GPU; a leak of 64 MiB per request is planted)");
    let output = Command::new(native.join("serve_sim"))
        .args(ARGS)
        .env("LD_PRELOAD", preload_value(&lib))
        .env("KVSCOPE_OUT", &dir)
        .env("KVSCOPE_SAMPLE_MS", "10")
        .output()
        .map_err(|e| CliError::input(format!("cannot run serve_sim: {e}")))?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("   | {line}");
    }
    if !output.status.success() {
        return Err(CliError {
            message: format!(
                "serve_sim failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            code: 1,
        });
    }
    let reports = reports_since(&dir, since);
    let Some(path) = reports
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
    else {
        return Err(CliError {
            message: format!("no exit report in {}", dir.display()),
            code: 1,
        });
    };
    let r = load(path)?;

    println!(
        "\n== 2. kvscope check {} --model {MODEL}",
        if temporary {
            "<the exit report>".to_string()
        } else {
            path.display().to_string()
        }
    );
    let args = ModelArgs {
        model: Some(MODEL.into()),
        ..default_model_args()
    };
    let mut notes = Vec::new();
    let ctx = model_ctx(&args, 1, None, None, &mut notes)?;
    let result = check(
        vec![(path.display().to_string(), r.clone())],
        ctx.as_ref(),
        Thresholds::default(),
        Severity::Critical,
    );
    for line in text::render(&result).lines() {
        println!("   {line}");
    }
    if !temporary {
        let page = dir.join("demo.html");
        let text = html::render(&r, &result).map_err(CliError::input)?;
        std::fs::write(&page, text)
            .map_err(|e| CliError::input(format!("{}: {e}", page.display())))?;
        println!("\n== 3. the same as a page: {}", page.display());
    } else {
        println!(
            "\n   (kvscope demo --keep DIR keeps the report and writes it as an HTML page too)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(0)
}

/// The fit flags at their defaults, as clap would fill them.
fn default_model_args() -> ModelArgs {
    use clap::{Args, Command, FromArgMatches};
    let m = ModelArgs::augment_args(Command::new("demo")).get_matches_from(["demo"]);
    ModelArgs::from_arg_matches(&m).unwrap_or_else(|_| unreachable!("defaults always parse"))
}
