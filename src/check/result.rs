//! What a check found: the one result type every renderer (text, JSON,
//! HTML) reads.

use super::breakdown::Breakdown;
use super::finding::Finding;
use super::plan::PlanTable;
use super::steps::Step;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct KvSummary {
    pub layout: &'static str,
    pub tensors: u64,
    pub tensor_bytes: u64,
    pub bytes: u64,
    pub tokens: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceResult {
    pub device: u32,
    pub breakdown: Breakdown,
    pub kv_cache: Vec<KvSummary>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessResult {
    /// Which run (index into `runs`) the process belongs to.
    pub run: usize,
    pub label: String,
    pub pid: u32,
    pub hostname: Option<String>,
    pub cmdline: Vec<String>,
    pub reports: Vec<String>,
    pub devices: Vec<DeviceResult>,
}

/// One run: a process, or the ranks of one job, checked on its own
/// (`check::runs` says which reports belong together).
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// `run 0`, `run 1`, ... in the order the reports were given.
    pub label: String,
    /// `process.run_id` when `kvscope run` set it.
    pub run_id: Option<String>,
    /// The processes are the ranks of one job (checked together: balance,
    /// the tensor-parallel size when not given).
    pub ranks: bool,
    /// The processes' labels.
    pub processes: Vec<String>,
    pub cmdline: Vec<String>,
    /// The tensor-parallel size the model was checked at (None without --model).
    pub tp: Option<u64>,
    pub critical: usize,
    pub warnings: usize,
    pub info: usize,
    pub exit_status: i32,
}

/// A marker label the check did not understand (kept as a phase name).
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownMarker {
    pub process: String,
    pub label: String,
    pub count: u64,
}

/// Not `Serialize`: findings are typed facts, and `crate::render::json`
/// gives them their words and numbers.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub schema: &'static str,
    pub model: Option<String>,
    /// The runs the reports came from; one for a single run.
    pub runs: Vec<RunResult>,
    pub processes: Vec<ProcessResult>,
    pub findings: Vec<Finding>,
    pub critical: usize,
    pub warnings: usize,
    pub info: usize,
    pub notes: Vec<String>,
    /// Marker labels not understood, once per label and process.
    pub unknown_markers: Vec<UnknownMarker>,
    pub exit_status: i32,
    /// The engine's logged plan against each device (`--engine-log`;
    /// `check::engine_plan::apply`), empty without one.
    pub engine_plan: Vec<PlanTable>,
}
