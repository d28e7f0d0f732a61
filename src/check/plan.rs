//! The types of an engine-plan comparison (`engine_plan.rs`): which figure,
//! in which unit, and the table a renderer shows. A leaf, so that findings
//! (`finding.rs`) and results (`result.rs`) can hold them.

use crate::units::Bytes;
use serde::Serialize;

/// The figures an engine logs and the trace can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    Weights,
    KvCacheBytes,
    KvCacheTokens,
    MaxConcurrency,
    GraphPool,
    NonTorch,
    NonTorchIncrease,
    TorchPeak,
}

impl Figure {
    pub const ALL: [Figure; 8] = [
        Figure::Weights,
        Figure::KvCacheBytes,
        Figure::KvCacheTokens,
        Figure::MaxConcurrency,
        Figure::GraphPool,
        Figure::NonTorch,
        Figure::NonTorchIncrease,
        Figure::TorchPeak,
    ];
}

/// A figure's value, in its unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Bytes(Bytes),
    Tokens(u64),
    /// Requests of the logged length held at once.
    Times(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Bytes(b) => b.0 as f64,
            Value::Tokens(n) => n as f64,
            Value::Times(x) => x,
        }
    }
}

/// One row of the plan table.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanRow {
    pub figure: Figure,
    /// None: the engine did not log it.
    pub engine: Option<Value>,
    /// None: the trace cannot say (no --model for tokens, no markers, ...).
    pub measured: Option<Value>,
    /// (measured - engine) / engine, when both are known and engine > 0.
    pub off: Option<f64>,
}

/// The plan table of one device of one process.
#[derive(Clone, Debug)]
pub struct PlanTable {
    pub engine: &'static str,
    pub process: String,
    pub device: u32,
    pub run: usize,
    pub tolerance: f64,
    pub rows: Vec<PlanRow>,
}
