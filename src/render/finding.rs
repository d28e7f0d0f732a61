//! The words and numbers of a finding, from its typed facts: the one place
//! the findings' English lives. Text, JSON and HTML all show this view, so
//! they never disagree.

use crate::check::finding::{Facts, Finding, Growth, KvGroupShape, OomFailure};
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
        summary: w.summary,
        evidence: w.evidence,
        numbers: w.numbers,
        next: w.next,
    }
}

#[derive(Default)]
struct Words {
    summary: String,
    evidence: Vec<String>,
    numbers: BTreeMap<&'static str, Value>,
    next: String,
}

impl Words {
    fn new(summary: impl Into<String>) -> Words {
        Words {
            summary: summary.into(),
            ..Words::default()
        }
    }
    fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }
    fn number(mut self, key: &'static str, v: impl Into<Value>) -> Self {
        self.numbers.insert(key, v.into());
        self
    }
    fn next(mut self, what: impl Into<String>) -> Self {
        self.next = what.into();
        self
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
            x.next("see the largest live allocations and the phase that made them; the oom report (kvscope-*-oom.json) holds the last allocation events before the failure")
        }
        Facts::LeakPerRequest {
            growth,
            per_request,
        } => with_growth(
            Words::new(format!(
                "memory does not return to the baseline: {per_request} more per request, {} after {} requests",
                growth.bytes, growth.requests
            ))
            .number("bytes_per_request", per_request.0)
            .next("find what holds these allocations after a request ends (the api and phase above); in PyTorch, tensors kept in a list or cache outside the request"),
            growth,
        ),
        Facts::UnboundedGrowth {
            growth,
            per_request,
            per_token,
            tokens_served,
        } => {
            let mut x = Words::new(format!(
                "memory only grows while serving: {} in {} allocations never freed",
                growth.bytes,
                count(growth.allocations)
            ))
            .next("something caches per token or per step without a bound (a prefix or logits cache, a growing buffer): bound it or evict");
            if let Some(per) = per_request {
                x = x.number("bytes_per_request", per.0);
            }
            if let Some(per) = per_token {
                x = x.number("bytes_per_token", per.0).evidence(format!(
                    "{per} per token over {} tokens of {} completed requests",
                    count(*tokens_served),
                    growth.requests
                ));
            }
            with_growth(x, growth)
        }
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
        } => Words::new(format!(
            "memory use reached {:.0}% of the device ({used} of {total})",
            fraction * 100.0
        ))
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
        .evidence(format!(
            "made while serving and still live: {}",
            groups.join(", ")
        ));
    if let Some(l) = &g.levels {
        x = x.evidence(format!(
            "live memory when no request was in flight: {} at `serve`, {} at the first such point, {} at the last ({} points)",
            l.baseline, l.first, l.last, l.points
        ));
    }
    if let Some((free, more)) = g.runway {
        x = x.evidence(format!(
            "at this rate the {free} still free last about {} more requests",
            count(more)
        ));
    }
    x
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
        Layout::PerRequest => format!(
            "{} tensors of {} ({} token rows each): {} requests' caches",
            g.tensors,
            g.tensor_bytes,
            count(g.tokens),
            g.tensors / (2 * g.stage_layers).max(1)
        ),
    }
}
