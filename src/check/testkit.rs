//! Reports built in memory for unit tests of the checks: allocations,
//! markers (each with its timeline sample, as the shim takes them), failures
//! and pools on device 0, so a detector is tested without running a program
//! under the shim.

use super::context::{DeviceCtx, ModelCtx, Thresholds};
use super::finding::Finding;
use super::markers::Phases;
use crate::kv::fit::FitInput;
use crate::kv::source;
use crate::report::{
    Api, DeviceSample, DeviceStats, Failure, FrameworkSample, LiveAlloc, Marker, PoolStats,
    Process, Reason, Report, Sample, SCHEMA,
};

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

pub struct ReportBuilder {
    r: Report,
    t_ms: f64,
    /// The framework's counters (allocated, reserved) the next samples carry.
    counters: Option<(u64, u64)>,
}

impl Default for ReportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReportBuilder {
    /// An exit report of pid 1 with one 80 GiB device and nothing on it.
    pub fn new() -> ReportBuilder {
        ReportBuilder {
            r: Report {
                schema: SCHEMA.into(),
                reason: Some(Reason::Exit),
                process: Process {
                    pid: 1,
                    ..Process::default()
                },
                devices: vec![DeviceStats {
                    device: 0,
                    total_bytes: Some(80 * GIB),
                    ..DeviceStats::default()
                }],
                ..Report::default()
            },
            t_ms: 0.0,
            counters: None,
        }
    }

    fn tick(&mut self) -> f64 {
        self.t_ms += 1.0;
        self.t_ms
    }

    fn device(&mut self) -> &mut DeviceStats {
        &mut self.r.devices[0]
    }

    pub fn total(mut self, bytes: u64) -> Self {
        self.device().total_bytes = Some(bytes);
        self
    }

    /// Device memory in use per the driver (context and untracked included).
    pub fn used(mut self, bytes: u64) -> Self {
        let total = self.device().total_bytes.unwrap_or(0);
        self.device().free_bytes = Some(total.saturating_sub(bytes));
        self
    }

    /// `n` live allocations of `size`, made now (in the current phase).
    pub fn allocs(mut self, size: u64, n: u64) -> Self {
        for _ in 0..n {
            let t_ms = self.tick();
            let phase = self.r.markers.len() as u32;
            let seq = self.r.live.allocations.len() as u64;
            self.r.live.allocations.push(LiveAlloc {
                device: 0,
                address: 0x7000_0000_0000 + seq * (1 << 32),
                size,
                api: Api::CudaMalloc,
                stream: 0,
                t_ms,
                seq,
                thread: 1,
                phase,
                caller: None,
            });
            self.r.live.count += 1;
            self.r.live.bytes += size;
            let m = &mut self.device().memory;
            m.live_bytes += size;
            m.live_count += 1;
            m.allocs += 1;
            m.allocated_bytes += size;
            if m.live_bytes > m.peak_bytes {
                m.peak_bytes = m.live_bytes;
                m.peak_t_ms = Some(t_ms);
            }
        }
        self
    }

    pub fn alloc(self, size: u64) -> Self {
        self.allocs(size, 1)
    }

    /// The highest live bytes reached (higher than what is live at the end).
    pub fn peak(mut self, bytes: u64) -> Self {
        self.device().memory.peak_bytes = bytes;
        self
    }

    /// From now on, samples carry the framework's counters: PyTorch's
    /// memory_allocated and memory_reserved.
    pub fn counters(mut self, allocated: u64, reserved: u64) -> Self {
        self.counters = Some((allocated, reserved));
        self
    }

    /// A marker, and the timeline sample the shim takes with it.
    pub fn marker(self, label: &str) -> Self {
        self.marked(label, "api")
    }

    /// The shim's own `idle` marker (source `auto`).
    pub fn auto_idle(self) -> Self {
        self.marked("idle", "auto")
    }

    fn marked(mut self, label: &str, source: &str) -> Self {
        let t_ms = self.tick();
        self.r.markers.push(Marker {
            t_ms,
            label: label.into(),
            source: source.into(),
        });
        let m = &self.r.devices[0].memory;
        let sample = DeviceSample {
            device: 0,
            live_bytes: m.live_bytes,
            live_count: m.live_count,
            max_live_bytes: m.live_bytes,
            framework: self.counters.map(|(a, r)| FrameworkSample {
                allocated_bytes: a,
                reserved_bytes: r,
                sampled_t_ms: t_ms,
            }),
            ..DeviceSample::default()
        };
        self.r.timeline.push(Sample {
            t_ms,
            marker: Some(label.into()),
            devices: vec![sample],
        });
        self
    }

    pub fn start(self, id: &str, tokens: u64) -> Self {
        self.marker(&format!("request {id} start tokens={tokens}"))
    }

    pub fn done(self, id: &str) -> Self {
        self.marker(&format!("request {id} done"))
    }

    /// An out-of-memory failure of `size`, now.
    pub fn oom(mut self, size: u64) -> Self {
        let t_ms = self.tick();
        self.r.failures.push(Failure {
            t_ms,
            api: "cudaMalloc".into(),
            device: 0,
            size,
            code: 2,
            code_name: "cudaErrorMemoryAllocation".into(),
            thread: 1,
        });
        self.device().memory.failures += 1;
        self
    }

    pub fn pool(mut self, reserved: u64, used: u64) -> Self {
        let sampled_t_ms = self.tick();
        self.r.pools.push(PoolStats {
            device: 0,
            handle: 0x1000 + self.r.pools.len() as u64,
            default_pool: self.r.pools.is_empty(),
            reserved_bytes: reserved,
            used_bytes: used,
            reserved_high_bytes: reserved,
            used_high_bytes: used,
            release_threshold: u64::MAX,
            sampled_t_ms,
        });
        self
    }

    pub fn build(mut self) -> Report {
        // As the shim writes them: largest first, the report written last.
        self.r
            .live
            .allocations
            .sort_by(|a, b| b.size.cmp(&a.size).then(a.t_ms.total_cmp(&b.t_ms)));
        self.r.t_ms = self.tick();
        self.r
    }
}

/// llama-3.1-8b on one GPU of `gpu_mem`, checked for `context` x `concurrency`.
pub fn llama(gpu_mem: u64, context: u64, concurrency: u64) -> ModelCtx {
    let model = source::preset("llama-3.1-8b").unwrap_or_else(|| unreachable!("a preset"));
    ModelCtx::new(
        model,
        FitInput {
            context,
            concurrency,
            gpu_mem,
            ..FitInput::default()
        },
    )
}

/// `f` with the context of device 0.
pub fn with_ctx<T>(
    r: &Report,
    model: Option<&ModelCtx>,
    thresholds: Thresholds,
    f: impl FnOnce(&DeviceCtx) -> T,
) -> T {
    let phases = Phases::of(r);
    let c = DeviceCtx::new(r, 0, &phases, model, thresholds);
    f(&c)
}

/// Everything the detectors find on device 0, at the default thresholds.
pub fn detect(r: &Report, model: Option<&ModelCtx>) -> Vec<Finding> {
    with_ctx(r, model, Thresholds::default(), super::detect::run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_reports_pass_the_loaders_validation() {
        let r = ReportBuilder::new()
            .alloc(GIB)
            .marker("serve")
            .start("a", 10)
            .alloc(MIB)
            .done("a")
            .oom(GIB)
            .pool(2 * GIB, GIB)
            .build();
        let json = serde_json::to_vec(&r).unwrap();
        let back = crate::load::parse(&json).unwrap();
        assert_eq!(back.live.allocations[0].size, GIB);
        assert_eq!(back.live.allocations[1].phase, 2);
        assert_eq!(back.devices[0].memory.live_bytes, GIB + MIB);
    }
}
