//! The words and numbers of a finding, from its typed facts: the one place
//! the findings' English lives. Text, JSON and HTML all show this view, so
//! they never disagree.

use super::growth::{self, phrase};
use super::words::Words;
use crate::check::finding::{Facts, Finding, FrameworkCache, KvGroupShape, OomFailure, View};
use crate::check::kind::Severity;
use crate::check::kv_detect::Layout;
use crate::units::{count, duration_ms, Bytes};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A finding as people and machines read it; its JSON is `kvscope.check.v1`'s.
#[derive(Clone, Debug, Serialize)]
pub struct FindingView<'a> {
    /// Stable identifier, e.g. `leak_per_request`.
    pub name: &'static str,
    pub severity: Severity,
    pub process: &'a Option<String>,
    pub device: Option<u32>,
    /// The run it is about (index into the check's `runs`).
    pub run: usize,
    /// One line.
    pub summary: String,
    /// The numbers, times and allocation groups behind it.
    pub evidence: Vec<String>,
    /// The same numbers for machines (bytes as integers).
    pub numbers: BTreeMap<&'static str, Value>,
    pub next: String,
}

pub fn view(f: &Finding) -> FindingView<'_> {
    let w = words(&f.facts);
    FindingView {
        name: f.kind().as_str(),
        severity: f.severity,
        process: &f.process,
        device: f.device,
        run: f.run,
        summary: w.summary,
        evidence: w.evidence,
        numbers: w.numbers,
        next: w.next,
    }
}

fn failed(f: &OomFailure) -> String {
    format!(
        "{} of {} failed with out of memory at {}",
        f.api,
        f.size,
        duration_ms(f.t_ms)
    )
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn words(facts: &Facts) -> Words {
    match facts {
        Facts::OomWithMemoryFree {
            failure,
            pool_held,
            pools,
            device_free,
        } => {
            let mut x = Words::new(format!(
                "out of memory with memory free: {pool_held} held free by memory pools, {} asked",
                failure.size
            ))
            .evidence(failed(failure))
            .number("failed_bytes", failure.size.0)
            .number("pool_held_free_bytes", pool_held.0);
            for p in pools {
                x = x.evidence(format!(
                    "pool {:#x}: {} reserved, {} used, {} held free (release threshold {})",
                    p.handle,
                    p.reserved,
                    p.used,
                    Bytes(p.reserved.0.saturating_sub(p.used.0)),
                    p.release_threshold
                        .map_or("never".to_string(), |t| t.to_string())
                ));
            }
            if let Some(fr) = device_free {
                x = x
                    .evidence(format!(
                        "the driver reported {fr} free right after the failure"
                    ))
                    .number("device_free_bytes", fr.0);
            }
            x.next(
                "the free memory is in holes smaller than the request: trim the pool (cudaMemPoolTrimTo / torch.cuda.empty_cache()), lower its release threshold, \
                 allocate long-lived buffers first and in fewer sizes, or use expandable segments (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)",
            )
        }
        Facts::LongContextOom {
            failure,
            in_flight,
            sized_requests,
            total_tokens,
            longest_tokens,
            kv_needed,
            kv_budget,
            model,
            max_context,
            max_context_is_models_limit,
        } => {
            let mut x = Words::new(format!(
                "out of memory with {sized_requests} request{} in flight: {} tokens need {kv_needed} of KV cache, the budget holds {kv_budget}",
                plural(*sized_requests),
                count(*total_tokens),
            ))
            .evidence(failed(failure))
            .number("in_flight_requests", *sized_requests)
            .number("longest_request_tokens", *longest_tokens)
            .number("kv_needed_bytes", kv_needed.0)
            .number("kv_budget_bytes", kv_budget.0)
            .number("max_context_tokens", *max_context);
            for q in in_flight {
                x = x.evidence(format!(
                    "request {}: {} tokens, {} of KV on this GPU",
                    q.id,
                    q.tokens.map_or("?".into(), count),
                    q.kv.map_or("?".into(), |b| b.to_string())
                ));
            }
            x.evidence(format!(
                "{model} on this GPU: {kv_budget} for KV after weights, activations and non-torch memory; {sized_requests} concurrent request{} fit at most {} tokens each{}",
                plural(*sized_requests),
                count(*max_context),
                if *max_context_is_models_limit { " (the model's limit)" } else { "" }
            ))
            .next(format!(
                "cap the context (vLLM --max-model-len {max_context}), or budget for it: more GPUs (--tp), an fp8 KV cache, or fewer concurrent long requests; check with kvscope fit"
            ))
        }
        Facts::OutOfMemory {
            failure,
            tracked_live,
            largest,
        } => {
            let mut x = Words::new(failed(failure))
                .number("failed_bytes", failure.size.0)
                .number("live_bytes", tracked_live.0)
                .evidence(format!("{tracked_live} tracked live on the device"));
            for g in largest {
                x = x.evidence(format!(
                    "live: {} x {} by {} in `{}`",
                    count(g.count),
                    g.size,
                    g.api,
                    g.phase
                ));
            }
            x.evidence(format!(
                "live counted {}: without PyTorch's counters near the failure, memory it held reserved but unallocated cannot be told from its tensors",
                phrase(View::SegmentLevel)
            ))
            .next("see the largest live allocations and the phase that made them; the oom report (kvscope-*-oom.json) holds the last allocation events before the failure")
        }
        Facts::OomInFrameworkCache {
            failure,
            cache,
            tracked_live,
        } => with_cache(
            Words::new(format!(
                "out of memory with {} reserved by PyTorch but unallocated: {} asked, {}",
                cache.unallocated(),
                failure.size,
                phrase(View::TensorLevel)
            )),
            cache,
        )
        .evidence(failed(failure))
        .evidence(format!(
            "{tracked_live} tracked live on the device (PyTorch's segments, cache included)"
        ))
        .number("failed_bytes", failure.size.0)
        .number("live_bytes", tracked_live.0)
        .number("view", View::TensorLevel.name())
        .next("the free memory is inside PyTorch's segments, in blocks too small for the request (fragmentation): PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True lets segments grow in place; allocate long-lived tensors first and in fewer sizes; torch.cuda.empty_cache() only returns segments with nothing live in them"),
        Facts::FrameworkCacheHeld { cache, t_ms } => with_cache(
            Words::new(format!(
                "PyTorch holds {} reserved but unallocated (reserved - allocated)",
                cache.unallocated()
            )),
            cache,
        )
        .evidence(format!("PyTorch's counters at {}", duration_ms(*t_ms)))
        .number("view", View::TensorLevel.name())
        .next("cached or fragmented memory, free to PyTorch and unavailable to everyone else: torch.cuda.empty_cache() returns the empty segments, PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True keeps fewer of them"),
        Facts::LeakPerRequest { .. }
        | Facts::UnboundedGrowth { .. }
        | Facts::AllocatorWarmup { .. }
        | Facts::AllocatorHighWater { .. }
        | Facts::GrowthInconclusive { .. } => growth::words(facts),
        Facts::BaselineTooHigh {
            weights,
            expected,
            ratio,
            model,
            params,
            tp,
            pp,
        } => Words::new(format!(
            "the weights take {weights} where {model} needs {expected} per GPU ({ratio:.2}x): is the model loaded twice?"
        ))
        .number("weights_bytes", weights.0)
        .number("expected_weights_bytes", expected.0)
        .number("ratio", (ratio * 100.0).round() / 100.0)
        .evidence(format!(
            "allocations made before serving began, not KV cache: {weights}"
        ))
        .evidence(format!(
            "{model}: {} parameters, {expected} per GPU at tp {tp} pp {pp}",
            count(*params)
        ))
        .next("look for a second copy: a model built on the GPU before loading a checkpoint, a reference model, weights kept after conversion; compare the `load` phase's allocations"),
        Facts::ModelMismatch(m) => super::words::model_mismatch(m),
        Facts::KvCache {
            capacity_tokens,
            bytes,
            group,
            allowed,
        } => {
            let mut x = Words::new(format!(
                "KV cache of {} tokens ({bytes}) found",
                count(*capacity_tokens)
            ))
            .number("capacity_tokens", *capacity_tokens)
            .number("kv_bytes", bytes.0);
            if let Some(g) = group {
                x = x.evidence(format!("{}: {}", g.layout.name(), describe(g)));
            }
            if let Some(a) = allowed {
                x = x.number("allowed_tokens", a.tokens).evidence(format!(
                    "{} on this GPU at gpu_util {} allows about {} tokens ({} per token)",
                    a.model,
                    a.gpu_util,
                    count(a.tokens),
                    a.per_token
                ));
            }
            x.next("nothing to do")
        }
        Facts::KvCapacityShort {
            concurrency,
            context,
            needed_tokens,
            capacity_tokens,
        } => Words::new(format!(
            "{concurrency} requests of {} tokens need {} tokens of KV cache; it holds {}",
            count(*context),
            count(*needed_tokens),
            count(*capacity_tokens)
        ))
        .number("capacity_tokens", *capacity_tokens)
        .number("needed_tokens", *needed_tokens)
        .next("raise gpu_util, add GPUs, use an fp8 KV cache, or lower the context or the concurrency (kvscope fit shows the options)"),
        Facts::ConcurrencyHigh {
            in_flight,
            max_concurrency,
            threshold,
            mean_tokens,
        } => Words::new(format!(
            "{in_flight} requests in flight, over {:.0}% of the {max_concurrency} the KV cache holds at {} tokens",
            threshold * 100.0,
            count(*mean_tokens)
        ))
        .number("in_flight", *in_flight)
        .number("max_concurrency", *max_concurrency)
        .next("the engine will queue or preempt beyond this: add capacity or cap concurrency"),
        Facts::Utilization {
            used,
            total,
            fraction,
            peak_tracked,
            kv_preallocated,
            kv_in_use,
            context_untracked,
            pool_held,
        } => Words::new(if kv_preallocated.0 > 0 {
            format!(
                "memory beyond the planned KV cache reached {:.0}% of the device ({used} of {total}): the preallocated cache's {kv_preallocated} is sized by design and counts only as far as requests fill it ({kv_in_use})",
                fraction * 100.0
            )
        } else {
            format!(
                "memory use reached {:.0}% of the device ({used} of {total})",
                fraction * 100.0
            )
        })
        .number(
            "budget",
            if kv_preallocated.0 > 0 {
                "device, the preallocated KV cache counted as far as filled"
            } else {
                "device"
            },
        )
        .number("kv_preallocated_bytes", kv_preallocated.0)
        .number("used_bytes", used.0)
        .number("total_bytes", total.0)
        .number("fraction", (fraction * 1000.0).round() / 1000.0)
        .evidence(format!(
            "peak tracked {peak_tracked}{}; context and untracked {context_untracked}; pools hold {pool_held} free",
            if kv_preallocated.0 > 0 {
                format!(" (of which the KV cache's {kv_preallocated} counts as {kv_in_use} in use)")
            } else {
                String::new()
            },
        ))
        .next("little headroom is left for spikes: see the breakdown for what to shrink"),
        Facts::PoolsHoldFree { pool_held } => {
            Words::new(format!("memory pools hold {pool_held} free (reserved - used)"))
                .number("pool_held_free_bytes", pool_held.0)
                .next("free for the pool, unavailable to everyone else: trim it or lower its release threshold")
        }
        Facts::ContextSpike {
            request,
            tokens,
            mean_tokens,
        } => Words::new(format!(
            "request {request} has {} tokens, {:.1}x the average of {}",
            count(*tokens),
            *tokens as f64 / mean_tokens,
            count(*mean_tokens as u64)
        ))
        .number("tokens", *tokens)
        .number("mean_tokens", mean_tokens.round() as u64)
        .next("budget for the longest requests, not the average: kvscope fit --context with this length"),
        Facts::RankImbalance {
            peak_spread,
            capacity_spread,
            ranks,
        } => {
            let mut x = Words::new(format!(
                "the {} processes differ: peak memory by {:.0}%, KV capacity by {:.0}%",
                ranks.len(),
                peak_spread * 100.0,
                capacity_spread * 100.0
            ));
            for r in ranks {
                x = x.evidence(format!(
                    "{}: peak {}, KV cache {} tokens",
                    r.label,
                    r.peak,
                    count(r.kv_tokens)
                ));
            }
            x.next("tensor-parallel ranks should hold the same: look for work (a sampler, a cache, a second model) that only one rank does; the engine sizes the KV cache by the smallest")
        }
        Facts::EnginePlanMismatch {
            engine,
            figure,
            planned,
            measured,
            off,
            tolerance,
        } => super::plan::words(engine, *figure, *planned, *measured, *off, *tolerance),
    }
}

/// The framework's counters, in numbers and one evidence line.
fn with_cache(x: Words, c: &FrameworkCache) -> Words {
    x.number("framework_allocated_bytes", c.allocated.0)
        .number("framework_reserved_bytes", c.reserved.0)
        .number("framework_unallocated_bytes", c.unallocated().0)
        .evidence(format!(
            "PyTorch's counters: {} reserved, {} allocated in tensors, {} reserved but unallocated",
            c.reserved,
            c.allocated,
            c.unallocated()
        ))
}

/// How a KV cache group's size follows from the model's geometry.
fn describe(g: &KvGroupShape) -> String {
    match g.layout {
        Layout::Paged => format!(
            "{} tensors of {} = {} pages of {} each, {} tokens per page: {} tokens",
            g.tensors,
            g.tensor_bytes,
            count(g.tensor_bytes.0 / g.page.0.max(1)),
            g.page,
            g.block,
            count(g.tokens)
        ),
        Layout::TokenPool => format!(
            "{} buffers of {} = {} token rows of {} (one kept for padding): {} tokens",
            g.tensors,
            g.tensor_bytes,
            count(g.tensor_bytes.0 / g.token_row.0.max(1)),
            g.token_row,
            count(g.tokens)
        ),
        Layout::ByShape => format!(
            "{} equal tensors of {}, made after the weights",
            g.tensors, g.tensor_bytes
        ),
        Layout::PerRequest => format!(
            "{} tensors of {} ({} token rows each): {} requests' caches",
            g.tensors,
            g.tensor_bytes,
            count(g.tokens),
            g.tensors / (2 * g.stage_layers).max(1)
        ),
    }
}
