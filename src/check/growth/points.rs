//! The points of a device's timeline with no request in flight, and the
//! stretches of serving between them, in the view the report allows:
//! tensor-level when the framework's counters are there (PyTorch's
//! memory_allocated, and memory_reserved for its cache), segment-level (the
//! CUDA allocations, the framework's cache included) otherwise.

use super::classify::{classify, Reading, StepIn, View};
use crate::check::context::{DeviceCtx, Level};
use crate::check::markers::{is_idle, is_quiet};

/// A device's growth, read once per series.
pub struct Growth {
    pub view: View,
    /// The quiet points are the shim's automatic idle points: no markers
    /// said when serving began.
    pub inferred: bool,
    /// On the view's figure: live bytes, or the framework's allocated bytes.
    pub reading: Reading,
    /// Tensor-level only: the same points on the framework's reserved bytes.
    pub reserved: Option<Reading>,
    /// Tensor-level only: (allocated, reserved) at the last quiet point.
    pub cache: Option<(u64, u64)>,
}

/// The quiet points, the baseline first, and whether they were inferred.
fn quiet_points<'a>(c: &'a DeviceCtx) -> Option<(Vec<&'a Level>, bool)> {
    let idle = |l: &&Level| l.marker.as_deref().is_some_and(is_idle);
    if !c.phases.marked() {
        // No markers: serving is taken to begin at the first idle point after
        // memory rose above its starting level (the end of the load burst).
        let floor = c.levels.first()?.live;
        let points: Vec<&Level> = c
            .levels
            .iter()
            .filter(idle)
            .skip_while(|l| l.live <= floor + c.thresholds.leak_bytes)
            .collect();
        return (!points.is_empty()).then_some((points, true));
    }
    let base = match c.phases.serve.map(|i| &c.report.markers[i]) {
        Some(m) => c
            .levels
            .iter()
            .find(|l| l.marker.as_deref() == Some(m.label.as_str()) && l.t_ms >= m.t_ms),
        None => c
            .phases
            .serve_ms
            .and_then(|t| c.levels.iter().find(|l| l.t_ms >= t)),
    }?;
    let mut points = vec![base];
    let after = c.levels.iter().position(|l| std::ptr::eq(l, base))? + 1;
    points.extend(c.levels[after..].iter().filter(|l| {
        // In flight by the markers' order where the point has one: two
        // markers can carry the same time.
        let quiet = match l.marker_index {
            Some(i) => c.phases.in_flight_at_marker(i).is_empty(),
            None => c.phases.in_flight(l.t_ms).is_empty(),
        };
        l.marker.as_deref().is_some_and(is_quiet) && quiet
    }));
    Some((points, false))
}

/// Steps between consecutive points, each with the requests completed in it;
/// points with nothing completed since the last are passed over (when the
/// phases are inferred, every stretch between idle points is a step).
fn steps(c: &DeviceCtx, points: &[(f64, u64)], inferred: bool) -> Vec<StepIn> {
    let mut out = Vec::new();
    let Some(&(mut from, mut before)) = points.first() else {
        return out;
    };
    for &(t, level) in &points[1..] {
        let done: Vec<_> = c
            .phases
            .requests
            .iter()
            .filter(|q| q.done_ms.is_some_and(|d| d > from && d <= t))
            .collect();
        if !done.is_empty() || inferred {
            out.push(StepIn {
                requests: done.iter().map(|q| q.id.clone()).collect(),
                tokens: done.iter().map(|q| q.tokens).collect(),
                from_ms: from,
                to_ms: t,
                before,
                after: level,
            });
        }
        (from, before) = (t, level);
    }
    out
}

pub fn read(c: &DeviceCtx) -> Option<Growth> {
    let (points, inferred) = quiet_points(c)?;
    let threshold = c.thresholds.leak_bytes;
    let counted: Vec<&Level> = points
        .iter()
        .copied()
        .filter(|l| l.framework.is_some())
        .collect();
    let tensor = points[0].framework.is_some() && counted.len() >= 2;
    if tensor {
        let series = |f: fn(&Level) -> u64| -> Vec<(f64, u64)> {
            counted.iter().map(|l| (l.t_ms, f(l))).collect()
        };
        let alloc = series(|l| l.framework.as_ref().map_or(0, |f| f.allocated_bytes));
        let reserved = series(|l| l.framework.as_ref().map_or(0, |f| f.reserved_bytes));
        let last = counted.last()?.framework.as_ref()?;
        return Some(Growth {
            view: View::TensorLevel,
            inferred,
            reading: classify(alloc[0].1, steps(c, &alloc, inferred), threshold, inferred),
            reserved: Some(classify(
                reserved[0].1,
                steps(c, &reserved, inferred),
                threshold,
                inferred,
            )),
            cache: Some((last.allocated_bytes, last.reserved_bytes)),
        });
    }
    let live: Vec<(f64, u64)> = points.iter().map(|l| (l.t_ms, l.live)).collect();
    Some(Growth {
        view: if c.report.device_level() {
            View::DeviceLevel
        } else {
            View::SegmentLevel
        },
        inferred,
        reading: classify(live[0].1, steps(c, &live, inferred), threshold, inferred),
        reserved: None,
        cache: None,
    })
}
