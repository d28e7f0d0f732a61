//! What a finding is about and how bad it is: the stable identifiers that
//! JSON consumers, steps and exit statuses rely on. A leaf module: detectors,
//! steps and renderers all name findings through it, never by string.

use serde::Serialize;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const NAMES: [&'static str; 3] = ["info", "warning", "critical"];

    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl FromStr for Severity {
    type Err = String;

    /// The JSON names (`info`, `warning`, `critical`), as `--fail-on` takes them.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!(
                "'{s}' is not a severity (use {})",
                Severity::NAMES.join(", ")
            )),
        }
    }
}

/// One variant per finding name the check can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// Out of memory with memory free (in pools, or per the driver), or pools holding much free.
    Fragmentation,
    /// Out of memory because the requests in flight need more KV than the budget.
    LongContextOom,
    /// Out of memory, no better explanation.
    OutOfMemory,
    LeakPerRequest,
    UnboundedGrowth,
    /// Memory the allocator kept after the first requests: info.
    AllocatorWarmup,
    /// Memory the allocator's cache took following the largest request: info.
    AllocatorHighWater,
    /// Growth the run cannot attribute (cache or leak), and which run would.
    GrowthInconclusive,
    BaselineTooHigh,
    /// The reports do not look like the model given (weights or KV shape).
    ModelMismatch,
    KvCache,
    KvCapacityShort,
    ConcurrencyHigh,
    Utilization,
    ContextSpike,
    RankImbalance,
    /// A figure of the engine's logged memory plan (`--engine-log`) off
    /// from what the trace measured by more than the tolerance.
    EnginePlanMismatch,
}

impl FindingKind {
    /// The stable identifier, the `name` of a finding in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Fragmentation => "fragmentation",
            FindingKind::LongContextOom => "long_context_oom",
            FindingKind::OutOfMemory => "out_of_memory",
            FindingKind::LeakPerRequest => "leak_per_request",
            FindingKind::UnboundedGrowth => "unbounded_growth",
            FindingKind::AllocatorWarmup => "allocator_warmup",
            FindingKind::AllocatorHighWater => "allocator_high_water",
            FindingKind::GrowthInconclusive => "growth_inconclusive",
            FindingKind::BaselineTooHigh => "baseline_too_high",
            FindingKind::ModelMismatch => "model_mismatch",
            FindingKind::KvCache => "kv_cache",
            FindingKind::KvCapacityShort => "kv_capacity_short",
            FindingKind::ConcurrencyHigh => "concurrency_high",
            FindingKind::Utilization => "utilization",
            FindingKind::ContextSpike => "context_spike",
            FindingKind::RankImbalance => "rank_imbalance",
            FindingKind::EnginePlanMismatch => "engine_plan_mismatch",
        }
    }

    /// The findings that explain an out-of-memory failure: with one of them,
    /// the utilisation and fragmentation alerts would only repeat it.
    pub fn explains_oom(self) -> bool {
        matches!(
            self,
            FindingKind::Fragmentation | FindingKind::LongContextOom | FindingKind::OutOfMemory
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_parse_from_their_json_names_only() {
        for (s, v) in
            Severity::NAMES
                .iter()
                .zip([Severity::Info, Severity::Warning, Severity::Critical])
        {
            assert_eq!(s.parse::<Severity>(), Ok(v));
            assert_eq!(serde_json::to_value(v).unwrap(), *s);
        }
        assert!("WARNING".parse::<Severity>().is_err());
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }
}
