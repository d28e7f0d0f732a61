//! Settings, and every other fact the shim takes from the environment, read
//! once when the shim starts: nothing in the shim calls `getenv` later (a
//! host may call `setenv` from another thread at any time, and glibc's
//! environment is not safe to read meanwhile). Every variable is documented
//! in the README ("Environment").

use crate::report::{control, state, Launch};
use std::collections::BTreeMap;
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
    /// KVSCOPE_STOP_WAIT_MS: how long a terminating signal waits for the
    /// final report before the process dies as it would have (default 2000).
    pub stop_wait_ms: u64,
    /// KVSCOPE_STACK_MIN: allocations of at least this many bytes keep a
    /// native stack (default 64 MiB; 0: none).
    pub stack_min: u64,
    /// KVSCOPE_CTL_DIR: where `kvscope mark/dump PID` leave requests.
    pub ctl_dir: PathBuf,
    /// KVSCOPE_STATE=0: publish no live state file (default on).
    pub state: bool,
    /// KVSCOPE_STATE_DIR (else $XDG_RUNTIME_DIR/kvscope, else
    /// /tmp/kvscope-state-<uid>): where the live state file goes.
    pub state_dir: PathBuf,
    /// KVSCOPE_MODEL_NAME: the served model's name, for the exporter's `model_name` label.
    pub model_name: Option<String>,
    /// TMPDIR: where the fallback report directory goes (default /tmp).
    pub tmp_dir: PathBuf,
    /// The launcher's facts (RANK, LOCAL_RANK, WORLD_SIZE, CUDA_VISIBLE_DEVICES).
    pub launch: Launch,
    /// KVSCOPE_RUN_ID: the run a process belongs to (`kvscope run` sets it).
    pub run_id: Option<String>,
    /// Every KVSCOPE_* variable as set: the only variables a report keeps.
    pub env: BTreeMap<String, String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn launch_number(name: &str) -> Option<u32> {
    var(name)?.parse().ok()
}

/// Reads the variables, keeping a warning for each value it could not use
/// (the default stands in for it).
#[derive(Default)]
struct Env {
    warnings: Vec<String>,
}

impl Env {
    fn flag(&mut self, name: &str, default: bool) -> bool {
        let Some(v) = var(name) else { return default };
        match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                self.warnings.push(format!(
                    "{name}={v:?} is not 1/0/true/false; using {}",
                    u8::from(default)
                ));
                default
            }
        }
    }

    fn number(&mut self, name: &str, default: u64) -> u64 {
        let Some(v) = var(name) else { return default };
        v.parse().unwrap_or_else(|_| {
            self.warnings.push(format!(
                "{name}={v:?} is not a whole number; using {default}"
            ));
            default
        })
    }
}

impl Config {
    /// The settings, and a warning for each variable set to something unusable.
    pub fn from_env() -> (Config, Vec<String>) {
        let mut e = Env::default();
        let config = Config {
            disabled: e.flag("KVSCOPE_DISABLE", false),
            out_dir: var("KVSCOPE_OUT").map(PathBuf::from),
            sample_ms: e.number("KVSCOPE_SAMPLE_MS", 200),
            idle_ms: e.number("KVSCOPE_IDLE_MS", 2000),
            events: e.number("KVSCOPE_EVENTS", 512).clamp(1, 1 << 20) as usize,
            live_limit: e.number("KVSCOPE_LIVE_LIMIT", 100_000) as usize,
            timeline_points: e.number("KVSCOPE_TIMELINE_POINTS", 4096).clamp(16, 1 << 20) as usize,
            checkpoint_s: e.number("KVSCOPE_CHECKPOINT_S", 30),
            device_query: e.flag("KVSCOPE_DEVICE_QUERY", true),
            log: e.flag("KVSCOPE_LOG", false),
            stop_wait_ms: e.number("KVSCOPE_STOP_WAIT_MS", 2000).min(60_000),
            stack_min: e.number("KVSCOPE_STACK_MIN", 64 << 20),
            ctl_dir: control::base_dir(
                std::env::var_os(control::CTL_DIR_VAR)
                    .map(PathBuf::from)
                    .as_deref(),
            ),
            state: e.flag("KVSCOPE_STATE", true),
            state_dir: state::base_dir_from_env(),
            model_name: var("KVSCOPE_MODEL_NAME").map(|v| state::clip(&v)),
            tmp_dir: std::env::var_os("TMPDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp")),
            run_id: var("KVSCOPE_RUN_ID").map(|v| v.chars().take(128).collect()),
            launch: Launch {
                rank: launch_number("RANK"),
                local_rank: launch_number("LOCAL_RANK"),
                world_size: launch_number("WORLD_SIZE"),
                visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
            },
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| k.starts_with("KVSCOPE_"))
                .collect(),
        };
        (config, e.warnings)
    }

    /// A diagnostic line on stderr, when KVSCOPE_LOG=1.
    pub fn log(&self, msg: &str) {
        if self.log {
            eprintln!("kvscope: {msg}");
        }
    }
}
