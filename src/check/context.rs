//! Everything the steps and detectors of one device look at, gathered once.

use super::breakdown::{self, Breakdown};
use super::finding::{Mismatch, ModelMismatch};
use super::kv_detect::{self, Geometry, KvFound};
use super::markers::Phases;
use crate::kv::fit::{self, Fit, FitInput};
use crate::kv::{Dtype, Model, Parallel};
use crate::report::{Failure, FrameworkSample, Report};
use crate::units::Bytes;

/// The model and deployment the reports are checked against.
pub struct ModelCtx {
    pub model: Model,
    pub par: Parallel,
    pub kv: Dtype,
    pub fit: FitInput,
    pub geometry: Geometry,
    /// `--tp`, `--pp` or `--gpus` was given: the check never replaces `par`
    /// with the ranks it sees.
    pub par_given: bool,
}

impl ModelCtx {
    pub fn new(model: Model, fit: FitInput) -> ModelCtx {
        let kv = fit.kv_dtype.unwrap_or(model.dtype.served());
        let geometry = Geometry::new(&model, fit.par, kv, fit.block);
        ModelCtx {
            par: fit.par,
            kv,
            geometry,
            model,
            fit,
            par_given: false,
        }
    }

    /// The same model on `tp` tensor-parallel ranks (the ranks of one job,
    /// when the deployment's shape was not given).
    pub fn with_tp(&self, tp: u64) -> ModelCtx {
        let mut fit = self.fit.clone();
        fit.par.tp = tp;
        fit.gpus = tp * fit.par.pp.max(1);
        let mut m = ModelCtx::new(self.model.clone(), fit);
        m.par_given = self.par_given;
        m
    }

    /// The model's answer for this GPU at a given context and concurrency.
    pub fn fit_for(&self, gpu_mem: Option<u64>, context: u64, concurrency: u64) -> Option<Fit> {
        let gpus = self.par.tp * self.par.pp;
        let inp = FitInput {
            context: context.max(1),
            concurrency: concurrency.max(1),
            gpu_mem: gpu_mem.unwrap_or(self.fit.gpu_mem),
            gpus,
            ..self.fit.clone()
        };
        fit::fit(&self.model, &inp).ok()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    pub util_warn: f64,
    pub util_crit: f64,
    pub frag_bytes: u64,
    pub concurrency_frac: f64,
    pub spike_factor: f64,
    pub leak_bytes: u64,
    pub weights_factor: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            util_warn: 0.8,
            util_crit: 0.9,
            frag_bytes: 2 << 30,
            concurrency_frac: 0.8,
            spike_factor: 2.0,
            leak_bytes: 1 << 20,
            weights_factor: 1.5,
        }
    }
}

/// A point of the device's timeline.
#[derive(Clone, Debug)]
pub struct Level {
    pub t_ms: f64,
    pub live: u64,
    pub max_live: u64,
    pub marker: Option<String>,
    /// Index in `markers` of this point's marker (timeline marker points and
    /// markers are made in the same order).
    pub marker_index: Option<usize>,
    /// The framework allocator's counters at this point, when the program
    /// reported them (PyTorch's memory_allocated / memory_reserved).
    pub framework: Option<FrameworkSample>,
}

pub struct DeviceCtx<'a> {
    pub report: &'a Report,
    pub device: u32,
    pub phases: &'a Phases,
    /// The model, unless the reports do not look like it (`mismatch`).
    pub model: Option<&'a ModelCtx>,
    /// Why the reports do not look like the model given: the findings and
    /// steps built on the model are then left out.
    pub mismatch: Option<ModelMismatch>,
    pub kv: KvFound,
    pub breakdown: Breakdown,
    pub levels: Vec<Level>,
    /// Live bytes when serving began.
    pub baseline: Option<u64>,
    /// The first out-of-memory failure on this device.
    pub oom: Option<Failure>,
    pub thresholds: Thresholds,
}

impl<'a> DeviceCtx<'a> {
    pub fn new(
        report: &'a Report,
        device: u32,
        phases: &'a Phases,
        model: Option<&'a ModelCtx>,
        thresholds: Thresholds,
    ) -> DeviceCtx<'a> {
        let shape = kv_detect::by_shape(report, device, phases);
        let mut kv = match model {
            Some(m) => kv_detect::detect(report, device, &m.geometry, phases),
            None => shape.clone(),
        };
        let mut why = Vec::new();
        // A preallocated cache the model's geometry does not produce: once
        // serving is marked, so the cache is known to precede it.
        if let (Some(m), Some(g)) = (model, shape.groups.first()) {
            if kv.capacity_tokens().is_none() && phases.marked() {
                why.push(Mismatch::KvShape {
                    tensors: g.tensors,
                    tensor_bytes: Bytes(g.tensor_bytes),
                    layers: m
                        .geometry
                        .layers_per_stage
                        .iter()
                        .copied()
                        .max()
                        .unwrap_or(0),
                    page: Bytes(m.geometry.page),
                    token_row: Bytes(m.geometry.token_row),
                });
                kv = shape;
            }
        }
        let breakdown = breakdown::breakdown(report, device, &kv, phases);
        let mut next_marker = 0;
        let levels: Vec<Level> = report
            .timeline
            .iter()
            .filter_map(|s| {
                // Each marker point belongs to the next marker of its label.
                let marker_index = s.marker.as_ref().and_then(|label| {
                    let i = next_marker
                        + report.markers[next_marker.min(report.markers.len())..]
                            .iter()
                            .position(|m| &m.label == label)?;
                    next_marker = i + 1;
                    Some(i)
                });
                s.devices
                    .iter()
                    .find(|d| d.device == device)
                    .map(|d| Level {
                        t_ms: s.t_ms,
                        live: d.live_bytes,
                        max_live: d.max_live_bytes.max(d.live_bytes),
                        marker: s.marker.clone(),
                        marker_index,
                        framework: d.framework.clone(),
                    })
            })
            .collect();
        let baseline = match phases.serve.map(|i| &report.markers[i]) {
            Some(m) => levels
                .iter()
                .find(|l| l.marker.as_deref() == Some(m.label.as_str()) && l.t_ms >= m.t_ms)
                .map(|l| l.live),
            None => phases
                .serve_ms
                .and_then(|t| levels.iter().find(|l| l.t_ms >= t).map(|l| l.live)),
        };
        let oom = report
            .failures
            .iter()
            .find(|f| {
                f.device == device
                    && f.code == 2
                    && crate::report::Api::from_name(&f.api).is_some_and(|a| a.allocates())
            })
            .cloned();
        let mut c = DeviceCtx {
            report,
            device,
            phases,
            model,
            mismatch: None,
            kv,
            breakdown,
            levels,
            baseline,
            oom,
            thresholds,
        };
        if let Some(m) = model {
            why.extend(c.weights_mismatch(m));
            if !why.is_empty() {
                c.model = None;
                c.mismatch = Some(ModelMismatch {
                    model: m.model.name.clone(),
                    tp: m.par.tp,
                    pp: m.par.pp,
                    why,
                });
            }
        }
        c
    }

    /// Live before serving began (or before the KV cache), when that is
    /// known and the process did not fail first: what counts as weights.
    pub fn weights_known(&self) -> bool {
        let first_kv = self
            .report
            .live
            .allocations
            .iter()
            .filter(|a| self.kv.addresses.contains(&a.address))
            .map(|a| a.t_ms)
            .min_by(f64::total_cmp);
        match (self.phases.serve_ms.or(first_kv), &self.oom) {
            (None, _) => false,
            (Some(t), Some(f)) => f.t_ms >= t,
            _ => true,
        }
    }

    /// Weights far from what the model needs per GPU: below half of it, or
    /// above 2.5x (twice is "loaded twice", `baseline_too_high`); 0.25x to
    /// 4x for a quantised or multimodal model, whose figure is less sure.
    fn weights_mismatch(&self, m: &ModelCtx) -> Option<Mismatch> {
        if !self.weights_known() {
            return None;
        }
        let fit = m.fit_for(self.total(), 1, 1)?;
        let uncertain =
            fit.quantization.is_some() || m.model.notes.iter().any(|n| n.starts_with("multimodal"));
        let (low, high) = if uncertain { (0.25, 4.0) } else { (0.5, 2.5) };
        let expected = fit.weights_bytes_per_gpu.max(1);
        let got = self.breakdown.weights_bytes;
        let ratio = got as f64 / expected as f64;
        (ratio < low || ratio > high).then_some(Mismatch::Weights {
            weights: Bytes(got),
            expected: Bytes(expected),
            low,
            high,
            uncertain,
        })
    }

    pub fn total(&self) -> Option<u64> {
        self.breakdown
            .total_bytes
            .or(self.model.map(|m| m.fit.gpu_mem))
    }

    /// The framework's counters closest to `t_ms` and no further than
    /// `window_ms` from it (the latest of a tie).
    pub fn framework_near(&self, t_ms: f64, window_ms: f64) -> Option<&FrameworkSample> {
        self.levels
            .iter()
            .filter_map(|l| l.framework.as_ref())
            .filter(|f| (f.sampled_t_ms - t_ms).abs() <= window_ms)
            .min_by(|a, b| {
                let (da, db) = ((a.sampled_t_ms - t_ms).abs(), (b.sampled_t_ms - t_ms).abs());
                da.total_cmp(&db)
                    .then(b.sampled_t_ms.total_cmp(&a.sampled_t_ms))
            })
    }

    /// The framework's latest counters on this device.
    pub fn framework_last(&self) -> Option<&FrameworkSample> {
        self.levels.iter().rev().find_map(|l| l.framework.as_ref())
    }

    /// Allocations made while completed requests were served and still live,
    /// not KV cache: (bytes, count, groups by size as (size, count)).
    pub fn leftovers_of_requests(&self) -> (u64, u64, Vec<(u64, u64)>) {
        // Phase p: made after marker p - 1 and before marker p.
        let Some(first) = self.phases.serving_phase(self.report) else {
            return (0, 0, Vec::new());
        };
        // Up to the last completed request, and never into a request cut short.
        let mut last = self.phases.last_done_marker.map_or(u32::MAX, |i| i as u32);
        if let Some(cut) = self
            .phases
            .requests
            .iter()
            .filter(|q| q.done_ms.is_none())
            .map(|q| q.start_marker as u32)
            .min()
        {
            last = last.min(cut);
        }
        let mut groups: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
        let (mut bytes, mut n) = (0, 0);
        for a in self.report.live.allocations.iter().filter(|a| {
            a.device == self.device
                && a.api.space() == crate::report::Space::Device
                && a.phase >= first
                && a.phase <= last
                && !self.kv.addresses.contains(&a.address)
        }) {
            bytes += a.size;
            n += 1;
            *groups.entry(a.size).or_default() += 1;
        }
        let mut g: Vec<(u64, u64)> = groups.into_iter().collect();
        g.sort_by_key(|(s, c)| std::cmp::Reverse(s * c));
        (bytes, n, g)
    }
}
