//! A finding: its severity, where it was found, and its evidence as typed
//! facts (sizes as `Bytes`, counts, times, names). Detectors build these and
//! write no English; `crate::render::finding` turns them into the summary,
//! evidence lines, numbers and advice people and machines read.

pub use super::growth::classify::{Unclear, View};
use super::kind::{FindingKind, Severity};
use super::kv_detect::Layout;
pub use super::plan::{Figure, Value};
use crate::units::Bytes;

#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    /// Which process (report) it is about: its label.
    pub process: Option<String>,
    pub device: Option<u32>,
    /// Which run (index into `CheckResult::runs`) it is about.
    pub run: usize,
    pub facts: Facts,
}

impl Finding {
    pub fn new(severity: Severity, facts: Facts) -> Finding {
        Finding {
            severity,
            process: None,
            device: None,
            run: 0,
            facts,
        }
    }

    pub fn kind(&self) -> FindingKind {
        self.facts.kind()
    }
}

/// The evidence of each kind of finding.
#[derive(Clone, Debug, PartialEq)]
pub enum Facts {
    /// Out of memory while pools (or the driver) held at least the size asked.
    OomWithMemoryFree {
        failure: OomFailure,
        pool_held: Bytes,
        pools: Vec<PoolFree>,
        /// What the driver reported free right after the failure.
        device_free: Option<Bytes>,
    },
    /// Out of memory because the requests in flight need more KV than the budget.
    LongContextOom {
        failure: OomFailure,
        /// Every request in flight at the failure.
        in_flight: Vec<RequestKv>,
        /// How many of them told their length.
        sized_requests: u64,
        total_tokens: u64,
        longest_tokens: u64,
        kv_needed: Bytes,
        kv_budget: Bytes,
        model: String,
        /// The longest context that many requests could each have.
        max_context: u64,
        max_context_is_models_limit: bool,
    },
    OutOfMemory {
        failure: OomFailure,
        tracked_live: Bytes,
        largest: Vec<LiveGroup>,
    },
    /// Out of memory while the framework's allocator held at least the size
    /// asked reserved but unallocated (its counters near the failure): the
    /// memory was in the process, in pieces of its cache too small to use.
    OomInFrameworkCache {
        failure: OomFailure,
        cache: FrameworkCache,
        tracked_live: Bytes,
    },
    LeakPerRequest {
        growth: Growth,
        per_request: Bytes,
    },
    UnboundedGrowth {
        growth: Growth,
        per_request: Option<Bytes>,
        per_token: Option<Bytes>,
        tokens_served: u64,
    },
    /// Memory the allocator kept after the first requests (workspaces, its
    /// first segments), flat after them.
    AllocatorWarmup {
        view: View,
        bytes: Bytes,
        requests: Vec<String>,
        /// Later stretches of serving that did not grow.
        flat_after: u64,
        cache: Option<FrameworkCache>,
    },
    /// Memory the allocator's cache took after requests larger than every
    /// one before, flat over requests no larger.
    AllocatorHighWater {
        view: View,
        bytes: Bytes,
        steps: Vec<GrowthStep>,
        flat_repeats: u64,
        cache: Option<FrameworkCache>,
        /// Read on the framework's reserved bytes (tensor-level, its cache
        /// follows the largest request; the tensors do not).
        on_reserved: bool,
    },
    /// Growth that the run cannot tell apart: the allocator's cache or a leak.
    GrowthInconclusive {
        view: View,
        why: Unclear,
        bytes: Bytes,
        steps: Vec<GrowthStep>,
        /// Points with no request in flight, the baseline included.
        points: u64,
        cache: Option<FrameworkCache>,
    },
    /// The framework's allocator holds much reserved but unallocated (no
    /// out-of-memory failure).
    FrameworkCacheHeld {
        cache: FrameworkCache,
        t_ms: f64,
    },
    BaselineTooHigh {
        weights: Bytes,
        expected: Bytes,
        /// weights / expected.
        ratio: f64,
        model: String,
        params: u64,
        tp: u64,
        pp: u64,
    },
    /// The reports do not look like the model checked against: the
    /// findings built on it (weights, KV capacity) are left out.
    ModelMismatch(ModelMismatch),
    KvCache {
        capacity_tokens: u64,
        bytes: Bytes,
        group: Option<KvGroupShape>,
        allowed: Option<KvAllowed>,
    },
    KvCapacityShort {
        concurrency: u64,
        context: u64,
        needed_tokens: u64,
        capacity_tokens: u64,
    },
    ConcurrencyHigh {
        in_flight: u64,
        max_concurrency: u64,
        /// The threshold, a fraction of `max_concurrency`.
        threshold: f64,
        mean_tokens: u64,
    },
    Utilization {
        used: Bytes,
        total: Bytes,
        fraction: f64,
        peak_tracked: Bytes,
        kv_preallocated: Bytes,
        /// The part of the preallocated KV cache the requests in flight fill.
        kv_in_use: Bytes,
        context_untracked: Bytes,
        pool_held: Bytes,
    },
    /// Pools hold much memory free (no out-of-memory failure).
    PoolsHoldFree {
        pool_held: Bytes,
    },
    ContextSpike {
        request: String,
        tokens: u64,
        mean_tokens: f64,
    },
    RankImbalance {
        /// (max - min) / max over the processes.
        peak_spread: f64,
        capacity_spread: f64,
        ranks: Vec<RankLoad>,
    },
    /// A figure of the engine's start-up plan against the trace.
    EnginePlanMismatch {
        engine: &'static str,
        figure: Figure,
        planned: Value,
        measured: Value,
        /// (measured - planned) / planned.
        off: f64,
        tolerance: f64,
    },
}

impl Facts {
    pub fn kind(&self) -> FindingKind {
        match self {
            Facts::OomWithMemoryFree { .. } | Facts::PoolsHoldFree { .. } => {
                FindingKind::Fragmentation
            }
            Facts::LongContextOom { .. } => FindingKind::LongContextOom,
            Facts::OutOfMemory { .. } => FindingKind::OutOfMemory,
            Facts::OomInFrameworkCache { .. } | Facts::FrameworkCacheHeld { .. } => {
                FindingKind::Fragmentation
            }
            Facts::AllocatorWarmup { .. } => FindingKind::AllocatorWarmup,
            Facts::AllocatorHighWater { .. } => FindingKind::AllocatorHighWater,
            Facts::GrowthInconclusive { .. } => FindingKind::GrowthInconclusive,
            Facts::LeakPerRequest { .. } => FindingKind::LeakPerRequest,
            Facts::UnboundedGrowth { .. } => FindingKind::UnboundedGrowth,
            Facts::BaselineTooHigh { .. } => FindingKind::BaselineTooHigh,
            Facts::ModelMismatch(_) => FindingKind::ModelMismatch,
            Facts::KvCache { .. } => FindingKind::KvCache,
            Facts::KvCapacityShort { .. } => FindingKind::KvCapacityShort,
            Facts::ConcurrencyHigh { .. } => FindingKind::ConcurrencyHigh,
            Facts::Utilization { .. } => FindingKind::Utilization,
            Facts::ContextSpike { .. } => FindingKind::ContextSpike,
            Facts::RankImbalance { .. } => FindingKind::RankImbalance,
            Facts::EnginePlanMismatch { .. } => FindingKind::EnginePlanMismatch,
        }
    }
}

/// What did not match the model, on one device.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelMismatch {
    pub model: String,
    pub tp: u64,
    pub pp: u64,
    pub why: Vec<Mismatch>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mismatch {
    /// Weights outside [low, high] x what the model needs per GPU.
    Weights {
        weights: Bytes,
        expected: Bytes,
        low: f64,
        high: f64,
        /// The tolerance is wider: quantised or multimodal.
        uncertain: bool,
    },
    /// A preallocated cache seen by its shape that the model's KV geometry
    /// does not produce.
    KvShape {
        tensors: u64,
        tensor_bytes: Bytes,
        layers: u64,
        page: Bytes,
        token_row: Bytes,
    },
}

/// The failed allocation.
#[derive(Clone, Debug, PartialEq)]
pub struct OomFailure {
    pub api: String,
    pub size: Bytes,
    pub t_ms: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PoolFree {
    pub handle: u64,
    pub reserved: Bytes,
    pub used: Bytes,
    /// None: the pool never releases (threshold u64::MAX).
    pub release_threshold: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RequestKv {
    pub id: String,
    pub tokens: Option<u64>,
    /// Its KV on this GPU, when its length is known.
    pub kv: Option<Bytes>,
}

/// Live allocations of one size, entry point and phase.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveGroup {
    pub size: Bytes,
    pub api: &'static str,
    pub phase: String,
    pub count: u64,
    /// Who made the first of them: its stack (big allocations) or its
    /// caller, innermost frame first; empty when the report names none.
    pub made_by: Vec<String>,
}

/// The framework allocator's counters (PyTorch's memory_allocated and
/// memory_reserved): reserved - allocated is its cache and fragmentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameworkCache {
    pub allocated: Bytes,
    pub reserved: Bytes,
}

impl FrameworkCache {
    pub fn unallocated(&self) -> Bytes {
        Bytes(self.reserved.0.saturating_sub(self.allocated.0))
    }
}

/// One stretch of serving, between two points with no request in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct GrowthStep {
    pub requests: Vec<String>,
    /// Its largest request, when every one told its size.
    pub tokens: Option<u64>,
    /// What it added.
    pub bytes: Bytes,
}

/// Memory kept after requests and never returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Growth {
    /// What was measured: the framework's allocated bytes or the CUDA allocations.
    pub view: View,
    /// The phases were inferred from the trace (no markers).
    pub inferred: bool,
    /// From the baseline to the last point with no request in flight.
    pub bytes: Bytes,
    /// Allocations made while serving and still live (not KV cache).
    pub allocations: u64,
    pub requests: u64,
    /// The stretches the rate comes from: growth after requests no larger
    /// than ones already served (or of unknown size).
    pub recurring: Vec<GrowthStep>,
    /// Stretches whose requests were no larger than ones already served.
    pub repeats: u64,
    /// Whether the requests told their sizes.
    pub sized: bool,
    /// The largest groups by size: (size, count).
    pub groups: Vec<(Bytes, u64)>,
    pub levels: Option<IdleLevels>,
    /// At this rate: (free on the device, requests it lasts).
    pub runway: Option<(Bytes, u64)>,
}

/// Live memory (or allocated, tensor-level) when no request was in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct IdleLevels {
    pub baseline: Bytes,
    pub first: Bytes,
    pub last: Bytes,
    pub points: u64,
}

/// A recognised KV cache group, with the geometry that explains its size.
#[derive(Clone, Debug, PartialEq)]
pub struct KvGroupShape {
    pub layout: Layout,
    pub tensors: u64,
    pub tensor_bytes: Bytes,
    pub tokens: u64,
    pub page: Bytes,
    pub token_row: Bytes,
    pub block: u64,
    /// Attention layers of the largest pipeline stage.
    pub stage_layers: u64,
}

/// What the model's budget allows on this GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct KvAllowed {
    pub tokens: u64,
    pub model: String,
    pub gpu_util: f64,
    pub per_token: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RankLoad {
    pub label: String,
    pub kv_tokens: u64,
    pub peak: Bytes,
}
