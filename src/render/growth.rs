//! The words of the growth findings: leaks, unbounded growth, the
//! allocator's warm-up and high-water mark, and growth a run cannot tell
//! apart. Each says which view it judged on: tensor-level (the framework's
//! counters) or segment-level (the CUDA calls, the framework's cache included).

use super::words::Words;
use crate::check::finding::{Facts, FrameworkCache, Growth, GrowthStep, Unclear, View};
use crate::units::count;

/// The phrase that says what a verdict measured.
pub fn phrase(v: View) -> &'static str {
    match v {
        View::TensorLevel => "tensor-level (PyTorch's counters)",
        View::SegmentLevel => "segment-level (CUDA calls; PyTorch's cache included)",
        View::DeviceLevel => "device-level (NVML; the CUDA context and every cache included)",
    }
}

fn what(v: View) -> &'static str {
    match v {
        View::TensorLevel => "allocated in tensors",
        View::SegmentLevel => "live",
        View::DeviceLevel => "held on the device",
    }
}

fn step(s: &GrowthStep) -> String {
    let who = match s.requests.as_slice() {
        [] => "between idle points".to_string(),
        [one] => format!("request {one}"),
        many => format!("requests {}", many.join(", ")),
    };
    match s.tokens {
        Some(t) => format!("{who} ({} tokens): +{}", count(t), s.bytes),
        None => format!("{who}: +{}", s.bytes),
    }
}

fn steps(x: Words, label: &str, s: &[GrowthStep]) -> Words {
    if s.is_empty() {
        return x;
    }
    let mut list: Vec<String> = s.iter().take(8).map(step).collect();
    if s.len() > 8 {
        list.push(format!("{} more", s.len() - 8));
    }
    x.evidence(format!("{label}: {}", list.join("; ")))
}

fn with_view(x: Words, v: View) -> Words {
    x.number("view", v.name())
        .evidence(format!("judged {}", phrase(v)))
}

fn with_cache(x: Words, c: &Option<FrameworkCache>) -> Words {
    match c {
        Some(c) => x
            .number("framework_allocated_bytes", c.allocated.0)
            .number("framework_reserved_bytes", c.reserved.0)
            .evidence(format!(
                "PyTorch at the last quiet point: {} reserved, {} in tensors, {} cached (reserved - allocated)",
                c.reserved,
                c.allocated,
                c.unallocated()
            )),
        None => x,
    }
}

const RELEASE: &str = "torch.cuda.empty_cache() hands the cached segments back to the driver (the next request takes them again); PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True grows and shrinks segments instead of keeping one per size";

pub fn words(facts: &Facts) -> Words {
    match facts {
        Facts::LeakPerRequest {
            growth,
            per_request,
        } => with_growth(
            Words::new(format!(
                "memory does not return to the baseline: {per_request} more per request, {} after {} requests, {}",
                growth.bytes, growth.requests, phrase(growth.view)
            ))
            .number("bytes_per_request", per_request.0)
            .next("find what holds these allocations after a request ends (`kvscope report` lists the live ones with their api and phase); in PyTorch, tensors kept in a list or cache outside the request"),
            growth,
        ),
        Facts::UnboundedGrowth {
            growth,
            per_request,
            per_token,
            tokens_served,
        } => {
            let mut x = Words::new(format!(
                "memory only grows while serving: {} in {} allocations never freed, {}",
                growth.bytes,
                count(growth.allocations),
                phrase(growth.view)
            ))
            .next("something caches per token or per step without a bound (a prefix or logits cache, a growing buffer): bound it or evict");
            if let Some(per) = per_request {
                x = x.number("bytes_per_request", per.0);
            }
            if let Some(per) = per_token {
                x = x.number("bytes_per_token", per.0).evidence(format!(
                    "{per} per token over {} tokens of the requests it grew after",
                    count(*tokens_served),
                ));
            }
            with_growth(x, growth)
        }
        Facts::AllocatorWarmup {
            view,
            bytes,
            requests,
            flat_after,
            cache,
        } => {
            let x = Words::new(format!(
                "allocator warm-up, not a leak: {bytes} kept after the first request{} ({}), flat over the {} after it, {}",
                if requests.len() == 1 { "" } else { "s" },
                match requests.as_slice() {
                    [one] => format!("request {one}"),
                    many => format!("requests {}", many.join(", ")),
                },
                count(*flat_after),
                phrase(*view)
            ))
            .number("warmup_bytes", bytes.0)
            .number("flat_after", *flat_after)
            .evidence("one-time memory of the first request: cuBLAS / cuDNN workspaces, lazily built buffers and the caching allocator's first segments");
            with_cache(with_view(x, *view), cache).next(format!(
                "nothing to do: it is kept for the life of the process and reused; {RELEASE}"
            ))
        }
        Facts::AllocatorHighWater {
            view,
            bytes,
            steps: s,
            flat_repeats,
            cache,
            on_reserved,
        } => {
            let x = Words::new(format!(
                "the allocator's cache follows the largest request: {bytes} after requests larger than every one before, flat over the {} no larger, {}",
                count(*flat_repeats),
                phrase(*view)
            ))
            .number("high_water_bytes", bytes.0)
            .number("flat_repeats", *flat_repeats)
            .number("on_reserved", *on_reserved);
            let mut x = steps(x, "grew after", s);
            if *on_reserved {
                // The tensors did not follow: the figures are the cache's.
                x = x.evidence("read on PyTorch's reserved bytes (memory_reserved()): its tensors (memory_allocated()) did not grow with the larger requests");
            }
            with_cache(with_view(x, *view), cache).next(format!(
                "nothing leaks: this is cached memory the allocator reuses for requests up to that size; {RELEASE}"
            ))
        }
        Facts::GrowthInconclusive {
            view,
            why,
            bytes,
            steps: s,
            points,
            cache,
        } => {
            let (summary, next) = match why {
                Unclear::EveryRequestLarger => (
                    format!("memory grew {bytes} after requests each larger than those before: the allocator's cache following the largest request, or a leak; this run cannot tell"),
                    "send a request no longer than one already served (repeat a size) and check again: a leak grows again, a cache does not",
                ),
                Unclear::TooFewRequests => (
                    format!("memory grew {bytes} over the only stretch of serving: allocator warm-up or a leak; one request cannot tell"),
                    "serve a few more requests, some no longer than the first, and check again",
                ),
                Unclear::SizesUnknown => (
                    format!("memory grew {bytes} after requests of unknown size: the allocator's cache following a larger request, or a leak"),
                    "give the request markers their sizes (`request <id> start tokens=N`) and check again, with some requests no longer than ones already served",
                ),
                Unclear::PhasesInferred => (
                    format!("memory grew {bytes} between the shim's automatic idle points (phases inferred from the trace: no markers say when serving began or where requests are)"),
                    "mark serving and the requests (`serve`, `request <id> start tokens=N`, `request <id> done`) and check again",
                ),
            };
            let x = Words::new(format!("{summary}, {}", phrase(*view)))
                .number("growth_bytes", bytes.0)
                .number("points", *points)
                .number("phases_inferred", *why == Unclear::PhasesInferred);
            let x = steps(x, "grew after", s);
            with_cache(with_view(x, *view), cache).next(next)
        }
        _ => Words::default(),
    }
}

/// What leaks and unbounded growth share: the totals and what is left.
fn with_growth(x: Words, g: &Growth) -> Words {
    let groups: Vec<String> = g
        .groups
        .iter()
        .map(|(s, k)| format!("{} x {s}", count(*k)))
        .collect();
    let mut x = x
        .number("growth_bytes", g.bytes.0)
        .number("allocations", g.allocations)
        .number("requests", g.requests)
        .number("phases_inferred", g.inferred);
    let label = if g.inferred {
        "grew between idle points".to_string()
    } else if !g.sized {
        format!("kept after {} requests of unknown size", g.recurring.len())
    } else {
        // Counted in stretches between quiet points (one request, or a
        // batch served together), which is what the list below shows.
        let n = g.recurring.len();
        format!(
            "kept in {n} of {} {} of requests no larger than ones already served",
            g.repeats,
            if g.repeats == 1 {
                "stretch"
            } else {
                "stretches"
            }
        )
    };
    x = steps(x, &label, &g.recurring);
    if !g.groups.is_empty() {
        x = x.evidence(format!(
            "made while serving and still live: {}",
            groups.join(", ")
        ));
    }
    if let Some(l) = &g.levels {
        x = x.evidence(format!(
            "memory {} when no request was in flight: {} at `serve`, {} at the first such point after it, {} at the last ({} points after `serve`)",
            what(g.view), l.baseline, l.first, l.last, l.points
        ));
    }
    if let Some((free, more)) = g.runway {
        x = x.evidence(format!(
            "at this rate the {free} still free last about {} more requests",
            count(more)
        ));
    }
    if g.inferred {
        x = x.evidence("phases inferred from the trace (no markers): not certain");
    } else if !g.sized {
        x = x.evidence("the requests did not tell their sizes (tokens=N): a cache following larger requests cannot be ruled out");
    } else if 2 * g.recurring.len() < g.repeats as usize {
        x = x.evidence("it grew after fewer than half of those requests: sporadic, not certain");
    }
    with_view(x, g.view)
}
