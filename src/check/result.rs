//! What a check found: the one result type every renderer (text, JSON,
//! HTML) reads.

use super::breakdown::Breakdown;
use super::finding::Finding;
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
    pub label: String,
    pub pid: u32,
    pub hostname: Option<String>,
    pub cmdline: Vec<String>,
    pub reports: Vec<String>,
    pub devices: Vec<DeviceResult>,
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
    pub processes: Vec<ProcessResult>,
    pub findings: Vec<Finding>,
    pub critical: usize,
    pub warnings: usize,
    pub info: usize,
    pub notes: Vec<String>,
    /// Marker labels not understood, once per label and process.
    pub unknown_markers: Vec<UnknownMarker>,
    pub exit_status: i32,
}
