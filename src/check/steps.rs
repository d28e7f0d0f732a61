//! The diagnostic discipline of the field, one step at a time: a baseline
//! with no requests; one request, after which memory must return to the
//! baseline; N concurrent requests, whose KV must be N x context x KV bytes
//! per token; one long request, whose growth must be linear in tokens.

use super::context::DeviceCtx;
use super::finding::{Finding, View};
use super::growth::classify::Verdict;
use super::growth::points;
use super::kind::FindingKind;
use super::kv_detect::Layout;
use crate::units::{bytes, count, signed_bytes};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Problem,
    Skipped,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub number: u8,
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

fn step(number: u8, name: &'static str, status: Status, detail: impl Into<String>) -> Step {
    Step {
        number,
        name,
        status,
        detail: detail.into(),
    }
}

/// How a step names a reading of CUDA allocations (the timeline's
/// `live_bytes`); a device-level diagnosis says its own words instead.
pub const SEGMENT_WORDS: &str = "segment-level (CUDA calls)";

fn no_model(c: &DeviceCtx) -> String {
    match &c.mismatch {
        Some(m) => format!("this does not look like {}: not compared", m.model),
        None => "no --model to compare with".into(),
    }
}

fn has(findings: &[Finding], kinds: &[FindingKind]) -> bool {
    findings.iter().any(|f| kinds.contains(&f.kind()))
}

pub fn run(c: &DeviceCtx, findings: &[Finding]) -> Vec<Step> {
    vec![
        baseline(c, findings),
        one_request(c, findings),
        concurrency(c, findings),
        long_request(c, findings),
    ]
}

fn baseline(c: &DeviceCtx, f: &[Finding]) -> Step {
    let Some(base) = c.baseline else {
        return step(
            1,
            "baseline",
            Status::Skipped,
            "no `serve` marker or request markers: mark when serving begins",
        );
    };
    let b = &c.breakdown;
    if let Some(m) = &c.mismatch {
        return step(
            1,
            "baseline",
            Status::Skipped,
            format!(
                "{} live when serving began: weights {}, KV cache {}; not compared: this does not look like {} (model_mismatch)",
                bytes(base),
                bytes(b.weights_bytes),
                bytes(c.kv.preallocated_bytes()),
                m.model
            ),
        );
    }
    let mut detail = format!(
        "{} live when serving began: weights {}, KV cache {}",
        bytes(base),
        bytes(b.weights_bytes),
        bytes(c.kv.preallocated_bytes())
    );
    if let Some(fit) = c.model.and_then(|m| m.fit_for(c.total(), 1, 1)) {
        detail += &format!(
            "; the model needs {} of weights per GPU",
            bytes(fit.weights_bytes_per_gpu)
        );
    }
    let status = if has(f, &[FindingKind::BaselineTooHigh]) {
        Status::Problem
    } else {
        Status::Ok
    };
    step(1, "baseline", status, detail)
}

fn one_request(c: &DeviceCtx, f: &[Finding]) -> Step {
    let Some(g) = points::read(c).filter(|g| !g.reading.steps.is_empty()) else {
        return step(
            2,
            "one request returns to baseline",
            Status::Skipped,
            "no `request <id> done` markers",
        );
    };
    let r = &g.reading;
    let worst = r
        .steps
        .iter()
        .map(|s| s.input.after as i64 - r.baseline as i64)
        .max_by_key(|d| d.unsigned_abs())
        .unwrap_or(0);
    let reading = match &r.verdict {
        Verdict::Flat => "back at the baseline",
        Verdict::Settled { .. } => {
            "grew only after the first requests or larger ones (the allocator's cache), flat over the rest"
        }
        Verdict::Leak { .. } => "grew again after requests no larger than ones already served",
        Verdict::Inconclusive { .. } => "growth this run cannot attribute (see the findings)",
    };
    let detail = format!(
        "{} requests done; {}{}: at the last of {} points with no request in flight after the baseline, {} from it (largest difference {}): {reading}",
        c.phases.completed(),
        match g.view {
            View::TensorLevel => "tensor-level (PyTorch's counters)",
            View::SegmentLevel => SEGMENT_WORDS,
            View::DeviceLevel => "device-level (NVML)",
        },
        if g.inferred { ", phases inferred" } else { "" },
        r.steps.len(),
        signed_bytes(r.last() as i64 - r.baseline as i64),
        signed_bytes(worst)
    );
    let status = if has(
        f,
        &[FindingKind::LeakPerRequest, FindingKind::UnboundedGrowth],
    ) {
        Status::Problem
    } else {
        Status::Ok
    };
    step(2, "one request returns to baseline", status, detail)
}

fn concurrency(c: &DeviceCtx, f: &[Finding]) -> Step {
    let n = c.phases.max_in_flight() as u64;
    // The sizes of the requests that were in flight together at the busiest
    // moment (a long request served alone elsewhere is not one of them);
    // without sizes there, the mean of all.
    let busiest = c
        .phases
        .requests
        .iter()
        .map(|q| c.phases.in_flight(q.start_ms))
        .filter(|v| v.len() as u64 == n)
        .find_map(|v| {
            let t: Vec<u64> = v.iter().filter_map(|q| q.tokens).collect();
            (!t.is_empty()).then(|| t.iter().sum::<u64>() as f64 / t.len() as f64)
        });
    let Some(mean) = busiest.or(c.phases.mean_tokens()) else {
        return step(
            3,
            "N concurrent requests",
            Status::Skipped,
            "no request markers with token counts",
        );
    };
    let Some(m) = c.model else {
        return step(3, "N concurrent requests", Status::Skipped, no_model(c));
    };
    let per_token = m.geometry.per_token;
    let expect = n * mean.round() as u64 * per_token;
    if let Some(cap) = c.kv.capacity_tokens() {
        let need = n * mean.round() as u64;
        let status = if has(
            f,
            &[FindingKind::KvCapacityShort, FindingKind::ConcurrencyHigh],
        ) {
            Status::Problem
        } else {
            Status::Ok
        };
        return step(
            3,
            "N concurrent requests",
            status,
            format!(
                "{n} concurrent x {} tokens = {} tokens ({}) of a preallocated {}-token cache ({:.1}%); the cache does not grow",
                count(mean.round() as u64),
                count(need),
                bytes(expect),
                count(cap),
                need as f64 * 100.0 / cap.max(1) as f64
            ),
        );
    }
    // A cache that grows: growth sampled while requests were in flight, against
    // what their tokens can hold at most.
    if c.baseline.is_none() {
        return step(3, "N concurrent requests", Status::Skipped, "no baseline");
    }
    let tensors = framework_base(c).is_some();
    let worst = growth_in_flight(c, per_token)
        .into_iter()
        .filter(|(_, _, _, n)| *n >= 2)
        .map(|(_, grew, exp, n)| (grew, exp, n))
        .max_by(|a, b| (a.0 as f64 / a.1 as f64).total_cmp(&(b.0 as f64 / b.1 as f64)));
    let Some((grew, exp, k)) = worst else {
        let why = if n < 2 {
            format!("the requests never overlapped (at most {n} in flight): nothing concurrent to judge")
        } else {
            format!("no sample while {n} requests were in flight (their tokens would hold at most {} of KV: {n} x {} tokens)", bytes(expect), count(mean.round() as u64))
        };
        return step(3, "N concurrent requests", Status::Skipped, why);
    };
    let ratio = grew as f64 / exp.max(1) as f64;
    step(
        3,
        "N concurrent requests",
        if ratio > 1.5 { Status::Problem } else { Status::Ok },
        format!("sampled growth {} with {k} requests in flight, whose tokens hold at most {} of KV ({ratio:.2}x){}", bytes(grew), bytes(exp), view_words(tensors)),
    )
}

/// PyTorch's allocated bytes at the baseline, when the report carries its
/// counters there: growth is then judged on tensors, not on segments that
/// the caching allocator rounds up and keeps (a 512 KiB tensor takes a
/// 2 MiB segment, one of 1-10 MiB a 20 MiB one).
fn framework_base(c: &DeviceCtx) -> Option<u64> {
    let serve = c.phases.serve_ms?;
    let window = (2 * c.report.shim.sample_ms).max(1000) as f64;
    c.framework_near(serve, window).map(|f| f.allocated_bytes)
}

/// Growth at each sample with requests in flight, over the last point
/// before it with none in flight (the baseline for the first): memory kept
/// by earlier requests (a leak, found on its own) is not counted again as
/// growth of the requests in flight. In tensors when the report has
/// PyTorch's counters, else the peak of CUDA allocations since the last
/// sample. (level index, growth, KV their tokens hold at most, requests).
fn growth_in_flight(c: &DeviceCtx, per_token: u64) -> Vec<(usize, u64, u64, usize)> {
    let Some(serve) = c.phases.serve_ms else {
        return Vec::new();
    };
    let mut quiet = (c.baseline, framework_base(c));
    let mut out = Vec::new();
    for (i, l) in c.levels.iter().enumerate() {
        let q = c.phases.in_flight(l.t_ms);
        if q.is_empty() {
            if l.t_ms >= serve {
                quiet = (
                    Some(l.live),
                    l.framework.as_ref().map(|f| f.allocated_bytes).or(quiet.1),
                );
            }
            continue;
        }
        let tokens: u64 = q.iter().filter_map(|r| r.tokens).sum();
        if tokens == 0 {
            continue;
        }
        let grew = match (quiet.1, &l.framework) {
            (Some(b), Some(f)) => f.allocated_bytes.saturating_sub(b),
            _ => match quiet.0 {
                Some(b) => l.max_live.saturating_sub(b),
                None => continue,
            },
        };
        out.push((i, grew, tokens * per_token, q.len()));
    }
    out
}

fn view_words(tensors: bool) -> String {
    if tensors {
        ", tensor-level (PyTorch's counters)".into()
    } else {
        format!(", {SEGMENT_WORDS}")
    }
}

fn long_request(c: &DeviceCtx, f: &[Finding]) -> Step {
    let Some(long) = c
        .phases
        .requests
        .iter()
        .filter(|q| q.tokens.is_some())
        .max_by_key(|q| q.tokens)
    else {
        return step(
            4,
            "one long request",
            Status::Skipped,
            "no request markers with token counts",
        );
    };
    let tokens = long.tokens.unwrap_or(0);
    let Some(m) = c.model else {
        return step(4, "one long request", Status::Skipped, no_model(c));
    };
    let expect = tokens * m.geometry.per_token;
    if has(f, &[FindingKind::LongContextOom]) {
        return step(
            4,
            "one long request",
            Status::Problem,
            format!(
                "request {} of {} tokens needs {} of KV and ran out of memory",
                long.id,
                count(tokens),
                bytes(expect)
            ),
        );
    }
    let mean = c.phases.mean_tokens().unwrap_or(0.0);
    if (tokens as f64) < 2.0 * mean || c.phases.requests.len() < 2 {
        return step(
            4,
            "one long request",
            Status::Skipped,
            format!(
                "no request longer than twice the average ({} tokens)",
                count(mean.round() as u64)
            ),
        );
    }
    if c.kv.groups.iter().any(|g| g.layout != Layout::PerRequest) {
        return step(4, "one long request", Status::Ok, format!("the longest request, {} tokens ({} of KV), fits the preallocated cache; memory does not grow with tokens", count(tokens), bytes(expect)));
    }
    let worst = growth_in_flight(c, m.geometry.per_token)
        .into_iter()
        .filter(|&(i, ..)| {
            let t = c.levels[i].t_ms;
            t >= long.start_ms && long.done_ms.is_none_or(|d| t <= d)
        })
        .map(|(_, grew, exp, _)| (grew, exp))
        .max_by(|a, b| (a.0 as f64 / a.1 as f64).total_cmp(&(b.0 as f64 / b.1 as f64)));
    match worst {
        Some((grew, exp)) => {
            let ratio = grew as f64 / exp.max(1) as f64;
            step(4, "one long request", if ratio > 1.5 { Status::Problem } else { Status::Ok }, format!("{} tokens: sampled growth {} against at most {} for the tokens in flight ({ratio:.2}x){}", count(tokens), bytes(grew), bytes(exp), view_words(framework_base(c).is_some())))
        }
        None => step(
            4,
            "one long request",
            Status::Skipped,
            format!(
                "no sample during the longest request ({} tokens, {} of KV expected)",
                count(tokens),
                bytes(expect)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::context::Thresholds;
    use crate::check::testkit::*;

    #[test]
    fn growth_in_flight_is_over_the_last_quiet_point_not_the_baseline() {
        // Request a keeps 100 MiB (a leak); request b then grows 120 MiB.
        let r = ReportBuilder::new()
            .alloc(GIB)
            .marker("serve")
            .start("a", 1000)
            .alloc(100 * MIB)
            .done("a")
            .start("b", 1000)
            .alloc(120 * MIB)
            .marker("decode")
            .done("b")
            .build();
        let m = llama(80 * GIB, 0, 1);
        let found = with_ctx(&r, Some(&m), Thresholds::default(), |c| {
            growth_in_flight(c, 131_072)
        });
        let grew: Vec<u64> = found.iter().map(|g| g.1).collect();
        // At a's start (nothing yet), b's start (the leak is not b's), b's decode.
        assert_eq!(grew, [0, 0, 120 * MIB], "{found:?}");
        assert!(found.iter().all(|g| g.2 == 1000 * 131_072 && g.3 == 1));
        // With PyTorch's counters, the growth is read in tensors.
        let r = ReportBuilder::new()
            .counters(GIB, 2 * GIB)
            .alloc(2 * GIB)
            .marker("serve")
            .start("a", 1000)
            .counters(GIB + 10 * MIB, 2 * GIB)
            .marker("decode")
            .done("a")
            .build();
        let found = with_ctx(&r, Some(&m), Thresholds::default(), |c| {
            growth_in_flight(c, 131_072)
        });
        assert_eq!(found.last().map(|g| g.1), Some(10 * MIB), "{found:?}");
    }

    /// Step 3 skipped: requests one at a time say so, and never "1 x N
    /// tokens" as if several had been in flight.
    #[test]
    fn requests_that_never_overlapped_skip_the_concurrency_step_in_those_words() {
        let mut b = ReportBuilder::new().alloc(16 * GIB).marker("serve");
        for id in ["a", "b"] {
            b = b.start(id, 192).alloc(MIB).done(id);
        }
        let r = b.build();
        let m = llama(80 * GIB, 0, 1);
        let steps = with_ctx(&r, Some(&m), Thresholds::default(), |c| {
            run(c, &super::super::detect::run(c))
        });
        let s = &steps[2];
        assert_eq!((s.number, s.status), (3, Status::Skipped), "{s:?}");
        assert!(
            s.detail.contains("never overlapped (at most 1 in flight)"),
            "{}",
            s.detail
        );
        assert!(!s.detail.contains("1 x"), "{}", s.detail);
    }
}
