//! Memory that does not return to the baseline after requests, read through
//! `check::growth`: a leak per request (a few allocations per request), or
//! unbounded growth (many, or in proportion to the tokens) when growth
//! recurs after requests no larger than ones already served; the
//! allocator's warm-up or high-water mark when it does not; and, when the
//! run cannot tell them apart, a finding that says so and which run would.

use crate::check::context::DeviceCtx;
use crate::check::finding::{Facts, Finding, FrameworkCache, Growth, GrowthStep, IdleLevels};
use crate::check::growth::classify::{Reading, Size, Unclear, Verdict};
use crate::check::growth::points::{self, Growth as Read};
use crate::check::kind::Severity;
use crate::units::Bytes;

fn step(r: &Reading, i: usize) -> GrowthStep {
    let s = &r.steps[i].input;
    GrowthStep {
        requests: s.requests.clone(),
        tokens: s.max_tokens(),
        bytes: Bytes(s.delta().max(0) as u64),
    }
}

fn cache(g: &Read) -> Option<FrameworkCache> {
    g.cache.map(|(a, r)| FrameworkCache {
        allocated: Bytes(a),
        reserved: Bytes(r),
    })
}

pub fn growth(c: &DeviceCtx) -> Vec<Finding> {
    let Some(g) = points::read(c) else {
        return Vec::new();
    };
    let r = &g.reading;
    match &r.verdict {
        Verdict::Flat => settled(&g, false, &[], r),
        Verdict::Settled { warmup, high_water } => settled(&g, *warmup, high_water, r),
        Verdict::Leak {
            recurring,
            repeats,
            confident,
        } => vec![leak(c, &g, recurring, *repeats, *confident)],
        Verdict::Inconclusive { why, grown } => {
            let severity = match why {
                Unclear::TooFewRequests => Severity::Info,
                Unclear::PhasesInferred if grown.len() < 2 => Severity::Info,
                _ => Severity::Warning,
            };
            vec![Finding::new(
                severity,
                Facts::GrowthInconclusive {
                    view: g.view,
                    why: *why,
                    bytes: Bytes(r.last().saturating_sub(r.baseline)),
                    steps: grown.iter().map(|&i| step(r, i)).collect(),
                    points: r.steps.len() as u64 + 1,
                    cache: cache(&g),
                },
            )]
        }
    }
}

/// Warm-up and high-water marks: info. Tensor-level, the high-water mark is
/// read on the framework's reserved bytes (its cache follows the largest
/// request; the tensors do not).
fn settled(g: &Read, warmup: bool, high: &[usize], r: &Reading) -> Vec<Finding> {
    let mut out = Vec::new();
    let flat_after = r.steps.iter().skip(1).filter(|s| !s.grew).count() as u64;
    if warmup {
        out.push(Finding::new(
            Severity::Info,
            Facts::AllocatorWarmup {
                view: g.view,
                bytes: step(r, 0).bytes,
                requests: r.steps[0].input.requests.clone(),
                flat_after,
                cache: cache(g),
            },
        ));
    }
    let (hr, high, on_reserved) = match (&g.reserved, high.is_empty()) {
        (Some(res), true) => match &res.verdict {
            Verdict::Settled { high_water, .. } => (res, high_water.clone(), true),
            _ => (r, Vec::new(), false),
        },
        _ => (r, high.to_vec(), false),
    };
    if !high.is_empty() {
        let flat_repeats = hr
            .steps
            .iter()
            .filter(|s| !s.grew && s.size == Size::Repeat)
            .count() as u64;
        out.push(Finding::new(
            Severity::Info,
            Facts::AllocatorHighWater {
                view: g.view,
                bytes: Bytes(hr.sum(&high).0),
                steps: high.iter().map(|&i| step(hr, i)).collect(),
                flat_repeats,
                cache: cache(g),
                on_reserved,
            },
        ));
    }
    out
}

fn leak(c: &DeviceCtx, g: &Read, recurring: &[usize], repeats: usize, confident: bool) -> Finding {
    let r = &g.reading;
    let (_, n, groups) = c.leftovers_of_requests();
    let done = c.phases.completed() as u64;
    let (bytes, requests) = r.sum(recurring);
    let per_request = bytes / requests.max(1);
    // Allocations made in the recurring stretches and still live.
    let in_steps = c
        .report
        .live
        .allocations
        .iter()
        .filter(|a| {
            a.device == c.device
                && !c.kv.addresses.contains(&a.address)
                && recurring.iter().any(|&i| {
                    let s = &r.steps[i].input;
                    a.t_ms > s.from_ms && a.t_ms <= s.to_ms
                })
        })
        .count() as u64;
    let tokens: u64 = recurring
        .iter()
        .flat_map(|&i| r.steps[i].input.tokens.iter().flatten())
        .sum();
    let growth = Growth {
        view: g.view,
        inferred: g.inferred,
        bytes: Bytes(r.last().saturating_sub(r.baseline)),
        allocations: n,
        requests: done,
        recurring: recurring.iter().map(|&i| step(r, i)).collect(),
        repeats: repeats as u64,
        sized: r.steps.iter().all(|s| s.input.max_tokens().is_some()),
        groups: groups.iter().take(4).map(|&(s, k)| (Bytes(s), k)).collect(),
        levels: r.steps.last().map(|last| IdleLevels {
            baseline: Bytes(r.baseline),
            first: Bytes(r.steps[0].input.after),
            last: Bytes(last.input.after),
            points: r.steps.len() as u64,
        }),
        runway: match (c.total(), c.breakdown.used_bytes) {
            (Some(total), Some(used)) if per_request > 0 => {
                let free = total.saturating_sub(used);
                Some((Bytes(free), free / per_request))
            }
            _ => None,
        },
    };
    // A few allocations per request is what a request keeps; many more, or
    // growth in proportion to the tokens, grow with the tokens.
    let facts = if in_steps < 4 * requests && !scales_with_tokens(r, recurring) {
        Facts::LeakPerRequest {
            growth,
            per_request: Bytes(per_request),
        }
    } else {
        Facts::UnboundedGrowth {
            growth,
            per_request: Some(Bytes(per_request)),
            per_token: bytes.checked_div(tokens).map(Bytes),
            tokens_served: tokens,
        }
    };
    let severity = if confident && !g.inferred {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Finding::new(severity, facts)
}

/// Growth per token steadier than growth per request, over requests of
/// different sizes. A stretch may hold several requests (concurrent ones
/// end in one stretch): per request is its growth over their number, so
/// that four requests keeping four times one's growth are not taken for
/// growth with their tokens.
fn scales_with_tokens(r: &Reading, recurring: &[usize]) -> bool {
    let pts: Vec<(f64, f64, f64)> = recurring
        .iter()
        .filter_map(|&i| {
            let s = &r.steps[i].input;
            let t: u64 = s.tokens.iter().flatten().sum();
            (t > 0 && s.tokens.iter().all(|t| t.is_some())).then_some((
                t as f64,
                s.delta() as f64,
                s.tokens.len() as f64,
            ))
        })
        .collect();
    let (tmin, tmax) = pts
        .iter()
        .map(|p| p.0 / p.2)
        .fold((f64::MAX, 0f64), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if pts.len() < 2 || tmax < 1.5 * tmin {
        return false;
    }
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        (hi - lo) / hi.abs().max(1.0)
    };
    let per_req: Vec<f64> = pts.iter().map(|p| p.1 / p.2).collect();
    let per_tok: Vec<f64> = pts.iter().map(|p| p.1 / p.0).collect();
    spread(&per_tok) < 0.5 * spread(&per_req)
}

#[cfg(test)]
mod tests {
    use crate::check::finding::{Facts, Unclear, View};
    use crate::check::kind::{FindingKind, Severity};
    use crate::check::testkit::*;
    use crate::report::Report;
    use crate::units::Bytes;

    /// Weights, `serve`, then four requests in turn, each leaving `n` x `size`.
    fn served(size: u64, n: u64) -> Report {
        let mut b = ReportBuilder::new().alloc(16 * GIB).marker("serve");
        for id in ["a", "b", "c", "d"] {
            b = b.start(id, 100).allocs(size, n).done(id);
        }
        b.build()
    }

    fn kinds(r: &Report) -> Vec<(FindingKind, Severity)> {
        detect(r, None)
            .iter()
            .map(|f| (f.kind(), f.severity))
            .collect()
    }

    #[test]
    fn a_few_allocations_kept_per_request_are_a_leak() {
        let found = detect(&served(64 * MIB, 1), None);
        let Facts::LeakPerRequest {
            growth,
            per_request,
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(found[0].severity, Severity::Critical);
        assert_eq!(*per_request, Bytes(64 * MIB));
        assert_eq!((growth.bytes, growth.requests), (Bytes(256 * MIB), 4));
        assert_eq!((growth.recurring.len(), growth.repeats), (3, 3));
        assert_eq!(growth.view, View::SegmentLevel);
        let levels = growth.levels.as_ref().unwrap();
        assert_eq!(
            (levels.baseline, levels.last),
            (Bytes(16 * GIB), Bytes(16 * GIB + 256 * MIB))
        );
    }

    /// A request's `done` and the next one's `start` at the same time (the
    /// clock's resolution): the verdict and the amount do not change.
    #[test]
    fn markers_at_the_same_time_are_read_in_their_order() {
        // As serve_sim wrote it: the last request starts in the microsecond
        // the one before it ends (a third of runs read as unbounded growth).
        let mut b = ReportBuilder::new().alloc(16 * GIB).marker("serve");
        for id in ["0", "1", "2", "3"] {
            b = b.start(id, 640).allocs(64 * MIB, 1).done(id);
        }
        let mut r = b.build();
        let at = |r: &Report, label: &str| r.markers.iter().position(|m| m.label == label).unwrap();
        let t = r.markers[at(&r, "request 2 done")].t_ms;
        let start = "request 3 start tokens=640";
        let i = at(&r, start);
        r.markers[i].t_ms = t;
        for s in r
            .timeline
            .iter_mut()
            .filter(|s| s.marker.as_deref() == Some(start))
        {
            s.t_ms = t;
        }
        let found = detect(&r, None);
        let Facts::LeakPerRequest {
            growth,
            per_request,
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(*per_request, Bytes(64 * MIB));
        assert_eq!((growth.bytes, growth.requests), (Bytes(256 * MIB), 4));
    }

    #[test]
    fn many_allocations_kept_are_unbounded_growth() {
        let found = detect(&served(2 * MIB, 8), None);
        let Facts::UnboundedGrowth {
            growth, per_token, ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(growth.allocations, 32);
        // 16 MiB over each repeated request of 100 tokens.
        assert_eq!(*per_token, Some(Bytes(16 * MIB / 100)));
    }

    #[test]
    fn requests_that_give_their_memory_back_grow_nothing() {
        assert!(detect(&served(MIB, 0), None).is_empty());
        // Below the threshold (1 MiB per request): not a leak.
        assert!(detect(&served(MIB / 2, 1), None).is_empty());
    }

    /// What a caching allocator does: segments after the first request and
    /// after the first longer one, none over repeats.
    #[test]
    fn warmup_and_high_water_are_info() {
        let r = ReportBuilder::new()
            .alloc(16 * GIB)
            .marker("serve")
            .start("0", 200)
            .allocs(20 * MIB, 3)
            .done("0")
            .start("1", 400)
            .alloc(20 * MIB)
            .done("1")
            .start("2", 200)
            .done("2")
            .start("3", 400)
            .done("3")
            .build();
        assert_eq!(
            kinds(&r),
            [
                (FindingKind::AllocatorWarmup, Severity::Info),
                (FindingKind::AllocatorHighWater, Severity::Info)
            ]
        );
        let found = detect(&r, None);
        let Facts::AllocatorHighWater {
            bytes,
            steps,
            flat_repeats,
            ..
        } = &found[1].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!((*bytes, *flat_repeats), (Bytes(20 * MIB), 2));
        assert_eq!(steps[0].requests, ["1"]);
    }

    #[test]
    fn growth_after_ever_longer_requests_is_inconclusive() {
        let r = ReportBuilder::new()
            .marker("serve")
            .start("0", 100)
            .alloc(20 * MIB)
            .done("0")
            .start("1", 200)
            .alloc(20 * MIB)
            .done("1")
            .build();
        let found = detect(&r, None);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(matches!(
            found[0].facts,
            Facts::GrowthInconclusive {
                why: Unclear::EveryRequestLarger,
                ..
            }
        ));
    }

    /// PyTorch's counters: the tensors return, the cache stays.
    #[test]
    fn counters_judge_on_allocated_bytes() {
        let healthy = ReportBuilder::new()
            .alloc(GIB)
            .counters(900 * MIB, GIB)
            .marker("serve")
            .start("0", 100)
            .alloc(256 * MIB)
            .counters(932 * MIB, GIB + 256 * MIB)
            .done("0")
            .start("1", 100)
            .alloc(256 * MIB)
            .counters(932 * MIB, GIB + 512 * MIB)
            .done("1")
            .start("2", 100)
            .alloc(256 * MIB)
            .done("2")
            .build();
        // Segment-level the same run looks like a leak; tensor-level it is a warm-up.
        let found = detect(&healthy, None);
        assert_eq!(found.len(), 1, "{found:?}");
        let Facts::AllocatorWarmup {
            view, bytes, cache, ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!((*view, *bytes), (View::TensorLevel, Bytes(32 * MIB)));
        assert_eq!(
            cache.unwrap().unallocated(),
            Bytes(GIB + 512 * MIB - 932 * MIB)
        );

        let leak = ReportBuilder::new()
            .counters(GIB, GIB)
            .marker("serve")
            .start("0", 100)
            .counters(GIB + 64 * MIB, 2 * GIB)
            .done("0")
            .start("1", 100)
            .counters(GIB + 128 * MIB, 2 * GIB)
            .done("1")
            .start("2", 100)
            .counters(GIB + 192 * MIB, 2 * GIB)
            .done("2")
            .build();
        let found = detect(&leak, None);
        let Facts::LeakPerRequest {
            growth,
            per_request,
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(found[0].severity, Severity::Critical);
        assert_eq!(
            (growth.view, *per_request),
            (View::TensorLevel, Bytes(64 * MIB))
        );
    }

    /// An automatic idle point inside a request is not a quiet point; without
    /// markers, growth across idle points is never critical.
    #[test]
    fn idle_points_inside_requests_and_inferred_phases() {
        let r = ReportBuilder::new()
            .alloc(GIB)
            .marker("serve")
            .start("0", 100)
            .alloc(512 * MIB)
            .auto_idle()
            .done("0")
            .build();
        let found = detect(&r, None);
        // One stretch: warm-up or leak, info.
        assert_eq!(found[0].severity, Severity::Info);

        let mut b = ReportBuilder::new()
            .alloc(MIB)
            .auto_idle()
            .alloc(GIB)
            .auto_idle();
        for _ in 0..3 {
            b = b.alloc(64 * MIB).auto_idle();
        }
        let found = detect(&b.build(), None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Warning);
        let Facts::GrowthInconclusive {
            why, bytes, points, ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(
            (*why, *bytes, *points),
            (Unclear::PhasesInferred, Bytes(192 * MIB), 4)
        );
    }
}

#[cfg(test)]
#[path = "growth_concurrent_tests.rs"]
mod concurrent_tests;
