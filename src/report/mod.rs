//! The report format, `kvscope.report.v1`: written by the shim, read by the
//! reader. Every field and its unit is described in docs/report-schema.md.
//!
//! Conventions: sizes are bytes (u64), times are milliseconds since the shim
//! started in the process (`t_ms`, f64) unless the name says `unix_ms`.
//! Readers accept reports with fields missing (`#[serde(default)]`), so a
//! field may be added to v1 without breaking older readers; renaming or
//! re-purposing one needs v2.

mod api;
pub mod control;
pub(crate) mod hooked;
mod live;
pub mod state;

pub use api::{error_name, Api, Space};
pub use live::*;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA: &str = "kvscope.report.v1";

/// The characters of a marker's label the shim keeps (`markers[].label`).
pub const MARKER_LABEL_MAX: usize = 200;

/// Why the report was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// At process exit (atexit).
    Exit,
    /// At the first out-of-memory failure: the post-mortem.
    Oom,
    /// On demand: `kvscope_dump()` or `kvscope dump PID`.
    Dump,
    /// Periodically while allocations change (KVSCOPE_CHECKPOINT_S), for
    /// processes that end without running exit handlers.
    Checkpoint,
    /// On a terminating signal (SIGTERM, SIGINT, SIGHUP) left at its default
    /// action: the last report before the process dies by it.
    Signal,
}

/// `modes` of a report kvscope built from NVML's per-process figures
/// (`kvscope diagnose` without the shim): a timeline and markers, no allocation.
pub const DEVICE_LEVEL_MODE: &str = "nvml";

impl Report {
    /// Built at device level (NVML), not written by the shim.
    pub fn device_level(&self) -> bool {
        self.modes.iter().any(|m| m == DEVICE_LEVEL_MODE)
    }
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Exit => "exit",
            Reason::Oom => "oom",
            Reason::Dump => "dump",
            Reason::Checkpoint => "checkpoint",
            Reason::Signal => "signal",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub schema: String,
    pub reason: Option<Reason>,
    /// The label given to `kvscope_dump`, or what triggered the report.
    pub reason_detail: Option<String>,
    /// How allocations reached the shim: "preload", "pluggable", or both.
    pub modes: Vec<String>,
    pub process: Process,
    pub shim: ShimInfo,
    /// Wall-clock time of writing, ms since the Unix epoch.
    pub written_unix_ms: u64,
    /// `t_ms` of writing.
    pub t_ms: f64,
    pub devices: Vec<DeviceStats>,
    /// Pinned host memory (cudaMallocHost and friends), all devices together.
    pub host: SpaceStats,
    /// Calls per entry point, failed ones included.
    pub calls: BTreeMap<String, u64>,
    /// Failed calls per entry point and error code (the code as a decimal string).
    pub failure_counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// The first failures, in order (capped at `shim.failure_limit`).
    pub failures: Vec<Failure>,
    pub anomalies: Anomalies,
    pub live: Live,
    pub vmm: Vmm,
    pub pools: Vec<PoolStats>,
    pub markers: Vec<Marker>,
    pub timeline: Vec<Sample>,
    /// The flight recorder: the last allocation events before the report, oldest first.
    pub events: Vec<Event>,
    /// The post-mortem of the first out-of-memory failure (`oom` reports only).
    pub oom: Option<Oom>,
    /// Out-of-memory failures so far and whether the process allocated again
    /// after the first: in every report written after the first one.
    pub out_of_memory: Option<OomHistory>,
    /// Every place that called CUDA for a live allocation or an event of
    /// this report; `caller` of live rows and events indexes it.
    pub callers: Vec<CallSite>,
    /// Native stacks of the live allocations of at least `shim.stack_min`
    /// bytes, largest first.
    pub stacks: Vec<StackRow>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    /// The run this process belongs to: `KVSCOPE_RUN_ID` as `kvscope run` sets
    /// it for a command and all its children (so a job's ranks share it), or
    /// one the shim makes up at start (`<host>-<pid>-<start_unix_ms>`).
    pub run_id: Option<String>,
    pub pid: u32,
    pub ppid: u32,
    pub cmdline: Vec<String>,
    pub exe: Option<String>,
    pub hostname: Option<String>,
    /// When the shim started in this process, ms since the Unix epoch.
    pub start_unix_ms: u64,
    /// Where the process sits in a distributed launch, read from the
    /// launcher's variables (the variables themselves are not kept).
    pub launch: Launch,
    /// kvscope's own settings (`KVSCOPE_*`) as the process saw them; no
    /// other environment variable ever enters a report. (Reports of kvscope
    /// 0.1 before `launch` held RANK and friends here; readers fall back to them.)
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Launch {
    /// RANK (torchrun, vLLM's workers).
    pub rank: Option<u32>,
    pub local_rank: Option<u32>,
    pub world_size: Option<u32>,
    /// CUDA_VISIBLE_DEVICES: which physical GPUs device 0, 1, ... are.
    pub visible_devices: Option<String>,
}

impl Process {
    /// The process's rank, from `launch` or an older report's `env`.
    pub fn rank(&self) -> Option<u32> {
        self.launch
            .rank
            .or_else(|| self.env.get("RANK").and_then(|r| r.parse().ok()))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ShimInfo {
    pub version: String,
    pub sample_ms: u64,
    pub idle_ms: u64,
    pub event_capacity: u64,
    pub live_limit: u64,
    pub failure_limit: u64,
    /// Allocations of at least this many bytes keep a native stack (0: none).
    pub stack_min: u64,
    /// Where reports go, and why, when the fallback was used.
    pub out_dir: String,
    pub out_dir_note: Option<String>,
}

/// One device: device memory (plain, pitched, pooled, VMM physical) and managed memory.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceStats {
    pub device: u32,
    /// cuDeviceTotalMem, when the shim could ask.
    pub total_bytes: Option<u64>,
    /// cuMemGetInfo at the last sample (includes other processes and the context).
    pub free_bytes: Option<u64>,
    pub free_sampled_t_ms: Option<f64>,
    /// Device memory: plain, pitched, pooled and VMM physical allocations.
    pub memory: SpaceStats,
    pub managed: SpaceStats,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpaceStats {
    pub live_bytes: u64,
    pub live_count: u64,
    pub peak_bytes: u64,
    pub peak_t_ms: Option<f64>,
    pub allocated_bytes: u64,
    pub allocs: u64,
    pub freed_bytes: u64,
    pub frees: u64,
    pub failures: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Failure {
    pub t_ms: f64,
    pub api: String,
    pub device: u32,
    pub size: u64,
    pub code: i32,
    pub code_name: String,
    pub thread: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Anomalies {
    /// Frees of pointers the shim never saw allocated (passed through).
    pub untracked_frees: u64,
    /// Frees of pointers freed shortly before and not allocated again.
    pub double_frees: u64,
    /// Pluggable mode: frees whose size differs from the allocation's.
    pub size_mismatched_frees: u64,
    /// Driver entry points handed out unhooked (an unknown version or variant).
    pub unrouted_entry_points: Vec<String>,
    /// Reports or samples the shim could not produce, with the reason.
    pub notes: Vec<String>,
}

/// Virtual memory (cuMemAddressReserve / cuMemCreate / cuMemMap).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Vmm {
    /// Address space reserved (not memory).
    pub reserved_bytes: u64,
    /// Physical memory held by handles (created and not yet destroyed).
    pub physical_bytes: u64,
    /// Bytes of reserved address space currently mapped to handles.
    pub mapped_bytes: u64,
    pub reservations: Vec<VmmRange>,
    pub handles: Vec<VmmHandle>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VmmRange {
    pub address: u64,
    pub size: u64,
    pub mapped_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VmmHandle {
    pub handle: u64,
    pub device: u32,
    pub size: u64,
    /// cuMemRelease was called; the memory lives on while mapped.
    pub released: bool,
    pub mappings: u64,
    pub t_ms: f64,
}

/// A stream-ordered memory pool, from cuMemPoolGetAttribute at the last sample.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PoolStats {
    pub device: u32,
    pub handle: u64,
    pub default_pool: bool,
    pub reserved_bytes: u64,
    pub used_bytes: u64,
    pub reserved_high_bytes: u64,
    pub used_high_bytes: u64,
    pub release_threshold: u64,
    pub sampled_t_ms: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Marker {
    pub t_ms: f64,
    pub label: String,
    /// "api" (kvscope_mark), "external" (kvscope mark PID), "auto" (idle detection).
    pub source: String,
}

/// One point of the timeline.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Sample {
    pub t_ms: f64,
    /// Set when the sample was taken for a marker.
    pub marker: Option<String>,
    pub devices: Vec<DeviceSample>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceSample {
    pub device: u32,
    /// Tracked device memory (the same figure as `devices[].memory.live_bytes`).
    pub live_bytes: u64,
    pub live_count: u64,
    /// Highest live_bytes since the previous sample (so downsampling keeps spikes).
    pub max_live_bytes: u64,
    /// Pool reserved + VMM physical + plain device allocations, where known.
    pub reserved_bytes: Option<u64>,
    /// Device total - free (cuMemGetInfo): everything on the device, context and other processes included.
    pub device_used_bytes: Option<u64>,
    /// The framework's own view of the same device, when the program reports
    /// it (`kvscope_framework_counters`: the Python helper's `mark()` and
    /// `watch_torch()`, automatic under `kvscope run`): the latest counters
    /// at the time of this point.
    pub framework: Option<FrameworkSample>,
}

/// A framework allocator's counters (PyTorch: `torch.cuda.memory_allocated()`
/// and `memory_reserved()`): tensor-level truth the CUDA calls cannot show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrameworkSample {
    /// Bytes in live tensors (rounded to the allocator's blocks).
    pub allocated_bytes: u64,
    /// Bytes the framework's allocator holds from CUDA: allocated plus its
    /// cache (reserved - allocated: cached or fragmented).
    pub reserved_bytes: u64,
    /// When the framework was asked (`t_ms`).
    pub sampled_t_ms: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    pub t_ms: f64,
    pub op: String,
    pub api: String,
    pub device: u32,
    pub address: u64,
    pub size: u64,
    /// CUDA error code for failed calls, 0 otherwise.
    pub code: i32,
    pub thread: u32,
    /// Index in `Report::callers` of the code that made the call; null when unknown.
    pub caller: Option<u32>,
}

/// The post-mortem of the first out-of-memory failure.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Oom {
    pub t_ms: f64,
    pub api: String,
    pub device: u32,
    pub size: u64,
    pub code: i32,
    pub thread: u32,
    /// cuMemGetInfo right after the failure, when it answered.
    pub device_free_bytes: Option<u64>,
    pub device_total_bytes: Option<u64>,
    /// Tracked device memory on that device at the failure.
    pub live_bytes: u64,
    pub live_count: u64,
    pub largest: Vec<LiveAlloc>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OomHistory {
    /// Out-of-memory failures of allocating calls, the first included.
    pub failures: u64,
    /// `t_ms` of the first.
    pub first_t_ms: f64,
    /// Allocations that succeeded after the first failure.
    pub allocations_after: u64,
    /// Whether any did: the process went on after the failure (PyTorch frees
    /// its cached blocks and retries, for one).
    pub recovered: bool,
}

impl Report {
    pub fn device(&self, device: u32) -> Option<&DeviceStats> {
        self.devices.iter().find(|d| d.device == device)
    }

    /// The call site at `caller` (an index in `callers`).
    pub fn caller(&self, caller: Option<u32>) -> Option<&CallSite> {
        caller.and_then(|i| self.callers.get(i as usize))
    }

    /// The calling file's name of a live row or event ("?" when unknown).
    pub fn caller_file(&self, caller: Option<u32>) -> &str {
        self.caller(caller).map_or("?", |c| c.file_name())
    }

    /// The label of phase `phase` (see `LiveAlloc::phase`): "(start)" before
    /// the first marker, the marker's label after it.
    pub fn phase_name(&self, phase: u32) -> String {
        match phase {
            0 => "(start)".into(),
            p => self
                .markers
                .get(p as usize - 1)
                .map_or(format!("#{p}"), |m| m.label.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_rows_round_trip_as_arrays() {
        let row = LiveAlloc {
            device: 1,
            address: 0x1000_0000_0000,
            size: 3 << 20,
            api: Api::CudaMallocAsyncPtsz,
            stream: 7,
            t_ms: 12.5,
            seq: 42,
            thread: 99,
            phase: 2,
            caller: Some(4),
        };
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(
            json,
            "[1,17592186044416,3145728,\"cudaMallocAsync_ptsz\",7,12.5,42,99,2,4]"
        );
        let back: LiveAlloc = serde_json::from_str(&json).unwrap();
        assert_eq!(back, row);
        // Rows of older reports end before the caller column.
        let old: LiveAlloc = serde_json::from_str("[1,2,3,\"cudaMalloc\",0,0.5,0,0,0]").unwrap();
        assert_eq!(old.caller, None);
        let unknown: LiveAlloc =
            serde_json::from_str("[1,2,3,\"cudaMalloc\",0,0.5,0,0,0,null]").unwrap();
        assert_eq!(unknown.caller, None);
        assert!(serde_json::from_str::<LiveAlloc>("[1,2,3,\"nope\",0,0,0,0,0]").is_err());
        assert!(serde_json::from_str::<LiveAlloc>("[1,2]").is_err());
    }

    #[test]
    fn a_minimal_report_parses_with_defaults() {
        let r: Report = serde_json::from_str(r#"{"schema":"kvscope.report.v1"}"#).unwrap();
        assert_eq!(r.schema, SCHEMA);
        assert!(r.devices.is_empty());
    }
}
