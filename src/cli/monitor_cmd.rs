//! `kvscope exporter` and `kvscope watch`: the live states of the processes
//! under the shim, as Prometheus metrics or a terminal view (`monitor/`).

use super::error::{CliError, Result};
use crate::monitor::{serve, watch};
use crate::report::state;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Where the shim publishes (the same rule as the shim's: docs/state.md).
fn state_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(state::base_dir_from_env)
}

fn seconds(s: f64, what: &str) -> Result<Duration> {
    if !(0.05..=3600.0).contains(&s) {
        return Err(CliError::input(format!(
            "{what} must be between 0.05 and 3600 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

#[derive(Args)]
pub struct ExporterArgs {
    /// Serve /metrics on this address (e.g. 0.0.0.0:9477; port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// The state directory (default: $KVSCOPE_STATE_DIR, else $XDG_RUNTIME_DIR/kvscope, else /tmp/kvscope-state-UID).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Also write the page to this file, for node_exporter's textfile collector.
    #[arg(long)]
    textfile: Option<PathBuf>,
    /// How often the textfile is rewritten, in seconds.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// Write the textfile (or print the page) once and end.
    #[arg(long, conflicts_with = "listen")]
    once: bool,
    /// The `Hostname` label (default: each process's host name), e.g. the node name dcgm-exporter uses.
    #[arg(long)]
    hostname: Option<String>,
    /// `model_name` for processes that do not set KVSCOPE_MODEL_NAME.
    #[arg(long)]
    model_name: Option<String>,
}

pub fn exporter(a: ExporterArgs) -> Result<i32> {
    if a.listen.is_none() && a.textfile.is_none() && !a.once {
        return Err(CliError::input(
            "give --listen ADDR, --textfile PATH or --once",
        ));
    }
    let dir = state_dir(a.state_dir);
    if a.once && !dir.is_dir() {
        // Not an error: the first process under the shim makes it (a
        // server waits for it without a word).
        eprintln!(
            "kvscope: note: no state directory {} yet: no process under the shim has published there",
            dir.display()
        );
    }
    let o = serve::Options {
        listen: a.listen,
        state_dir: dir,
        textfile: a.textfile,
        interval: seconds(a.interval, "--interval")?,
        once: a.once,
        hostname: a.hostname,
        model_name: a.model_name,
    };
    serve::run(&o)?;
    Ok(0)
}

#[derive(Args)]
pub struct WatchArgs {
    /// Only these processes (default: every process in the state directory).
    pids: Vec<u32>,
    /// The state directory (default as for `kvscope exporter`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// End after this many refreshes (default: at Ctrl-C).
    #[arg(long)]
    count: Option<u64>,
}

pub fn watch(a: WatchArgs) -> Result<i32> {
    let o = watch::Options {
        pids: a.pids,
        state_dir: state_dir(a.state_dir),
        interval: seconds(a.interval, "--interval")?,
        count: a.count,
    };
    watch::run(&o)?;
    Ok(0)
}
