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
    let (hr, high) = match (&g.reserved, high.is_empty()) {
        (Some(res), true) => match &res.verdict {
            Verdict::Settled { high_water, .. } => (res, high_water.clone()),
            _ => (r, Vec::new()),
        },
        _ => (r, high.to_vec()),
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
/// different sizes.
fn scales_with_tokens(r: &Reading, recurring: &[usize]) -> bool {
    let pts: Vec<(f64, f64)> = recurring
        .iter()
        .filter_map(|&i| {
            let s = &r.steps[i].input;
            let t: u64 = s.tokens.iter().flatten().sum();
            (t > 0 && s.tokens.iter().all(|t| t.is_some())).then_some((t as f64, s.delta() as f64))
        })
        .collect();
    let (tmin, tmax) = pts
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    if pts.len() < 2 || tmax < 1.5 * tmin {
        return false;
    }
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        (hi - lo) / hi.abs().max(1.0)
    };
    let per_req: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let per_tok: Vec<f64> = pts.iter().map(|p| p.1 / p.0).collect();
    spread(&per_tok) < 0.5 * spread(&per_req)
}
