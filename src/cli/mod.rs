//! The reader's command line: parsing the arguments, one module per
//! command, and the exit status. Commands never import each other; what two
//! share lives beside them (`model_args`, `preload`, `locate`, `error`).

mod channel;
mod check_cmd;
mod control;
mod demo;
mod devices;
mod diagnose;
mod diff;
mod engine_args;
mod error;
mod export;
mod fit;
mod installed;
mod locate;
mod model_args;
mod monitor_cmd;
mod preload;
mod private;
mod report_cmd;
mod run;
mod site_hook;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kvscope", version, about = "Finds GPU memory problems in LLM serving", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a report written by the shim (or render it as an HTML page).
    Report(report_cmd::ReportArgs),
    /// Run a command with the shim preloaded, then summarise its reports.
    Run {
        /// Where the reports go (default $KVSCOPE_OUT, else ./kvscope-reports).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run a simulated serving workload with a planted leak under the shim on the stand-in CUDA, and show the diagnosis.
    Demo {
        /// Keep the demo's reports in this directory (default: a temporary one, removed).
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Ask a running process (with the shim loaded) to write a report now.
    Dump {
        pid: u32,
        /// A note stored in the report.
        reason: Option<String>,
    },
    /// Put a marker on the timeline of a running process (with the shim loaded).
    Mark { pid: u32, label: String },
    /// KV cache and memory budget of a model: will it fit, with how much headroom.
    Fit(fit::FitArgs),
    /// Check reports against the KV model: breakdown, diagnostic steps, findings, alerts.
    Check(check_cmd::CheckArgs),
    /// What grew between two reports, grouped by kind of allocation.
    Diff {
        /// The earlier report, the one to compare from.
        a: PathBuf,
        /// The later report: what it holds beyond A is what grew.
        b: PathBuf,
    },
    /// Device memory per process and GPU, read through NVML (no shim needed).
    Devices(devices::DevicesArgs),
    /// Run the four diagnostic steps against a live OpenAI-compatible server under the shim, then check its reports.
    Diagnose(diagnose::DiagnoseArgs),
    /// Serve the live state of every process under the shim as Prometheus metrics.
    Exporter(monitor_cmd::ExporterArgs),
    /// A live terminal view of the processes under the shim.
    Watch(monitor_cmd::WatchArgs),
    /// Export a report to another tool's format (PyTorch's memory_viz).
    Export(export::ExportArgs),
}

/// clap's message on one line: what is wrong, without usage and tips.
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect();
    parts.join(" ").trim_start_matches("error: ").to_string()
}

pub fn main() -> i32 {
    use clap::error::ErrorKind;
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return 0;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return 2;
        }
        Err(e) => {
            eprintln!("kvscope: error: {}", one_line(&e));
            return 2;
        }
    };
    let result = match cli.command {
        Command::Report(a) => report_cmd::run(&a),
        Command::Diff { a, b } => diff::run(&a, &b),
        Command::Run { out, command } => run::run(out, &command),
        Command::Demo { keep } => demo::run(keep),
        Command::Dump { pid, reason } => control::dump(pid, reason.as_deref()),
        Command::Mark { pid, label } => control::mark(pid, &label),
        Command::Fit(a) => fit::run(&a),
        Command::Check(a) => check_cmd::run(&a),
        Command::Devices(a) => devices::run(&a),
        Command::Diagnose(a) => diagnose::run(&a),
        Command::Exporter(a) => monitor_cmd::exporter(a),
        Command::Watch(a) => monitor_cmd::watch(a),
        Command::Export(a) => export::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kvscope: error: {}", e.message);
            e.code
        }
    }
}
