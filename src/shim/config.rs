//! Settings, read once from the environment when the shim starts.
//! Every variable is documented in the README ("Environment").

use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Config {
    /// KVSCOPE_DISABLE=1: a pure pass-through, nothing recorded or written.
    pub disabled: bool,
    /// KVSCOPE_OUT: the report directory (default ./kvscope-reports).
    pub out_dir: Option<PathBuf>,
    /// KVSCOPE_SAMPLE_MS: timeline period (default 200 ms; 0 turns the sampler thread off).
    pub sample_ms: u64,
    /// KVSCOPE_IDLE_MS: an automatic "idle" marker after this long without
    /// allocation activity (default 2000 ms; 0 turns it off).
    pub idle_ms: u64,
    /// KVSCOPE_EVENTS: flight-recorder events kept per thread (default 512).
    pub events: usize,
    /// KVSCOPE_LIVE_LIMIT: live allocations listed in a report, largest first (default 100000).
    pub live_limit: usize,
    /// KVSCOPE_TIMELINE_POINTS: timeline points kept before downsampling (default 4096).
    pub timeline_points: usize,
    /// KVSCOPE_CHECKPOINT_S: rewrite a checkpoint report this often while
    /// allocations change (default 30 s; 0 off). Processes that end without
    /// exit() (os._exit in Python multiprocessing workers) leave at least this.
    pub checkpoint_s: u64,
    /// KVSCOPE_DEVICE_QUERY=0: never ask the driver for free/total memory or
    /// pool attributes (from the sampler thread, and once after an OOM).
    pub device_query: bool,
    /// KVSCOPE_LOG=1: diagnostics on stderr.
    pub log: bool,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn flag(name: &str) -> Option<bool> {
    var(name).map(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        )
    })
}

fn number(name: &str, default: u64) -> u64 {
    var(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

impl Config {
    pub fn from_env() -> Config {
        Config {
            disabled: flag("KVSCOPE_DISABLE").unwrap_or(false),
            out_dir: var("KVSCOPE_OUT").map(PathBuf::from),
            sample_ms: number("KVSCOPE_SAMPLE_MS", 200),
            idle_ms: number("KVSCOPE_IDLE_MS", 2000),
            events: number("KVSCOPE_EVENTS", 512).clamp(1, 1 << 20) as usize,
            live_limit: number("KVSCOPE_LIVE_LIMIT", 100_000) as usize,
            timeline_points: number("KVSCOPE_TIMELINE_POINTS", 4096).max(16) as usize,
            checkpoint_s: number("KVSCOPE_CHECKPOINT_S", 30),
            device_query: flag("KVSCOPE_DEVICE_QUERY").unwrap_or(true),
            log: flag("KVSCOPE_LOG").unwrap_or(false),
        }
    }
}
