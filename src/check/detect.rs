//! The problem detectors and the alerts, for one device.

use super::breakdown::pool_held;
use super::context::DeviceCtx;
use super::finding::{Finding, Severity};
use super::kv_detect::Layout;
use crate::kv::cache;
use crate::units::{bytes, count, duration_ms};

/// Names of the findings that explain an out-of-memory failure.
pub const OOM_FINDINGS: [&str; 3] = ["fragmentation", "long_context_oom", "out_of_memory"];

pub fn run(c: &DeviceCtx) -> Vec<Finding> {
    let mut out = Vec::new();
    let oom = out_of_memory(c);
    let oom_request = oom.as_ref().and(c.oom.as_ref()).map(|f| {
        c.phases
            .in_flight(f.t_ms)
            .iter()
            .map(|q| q.id.clone())
            .collect::<Vec<_>>()
    });
    out.extend(oom);
    out.extend(growth(c));
    out.extend(baseline_too_high(c));
    out.extend(kv_capacity(c));
    if !out.iter().any(|f| OOM_FINDINGS.contains(&f.name)) {
        out.extend(utilization(c));
        out.extend(fragmentation_alert(c));
    }
    out.extend(context_spikes(c, oom_request.unwrap_or_default()));
    for f in &mut out {
        f.device = Some(c.device);
    }
    out
}

/// The largest live allocations, grouped by size, entry point and phase.
fn largest_live(c: &DeviceCtx, n: usize) -> Vec<String> {
    let mut groups: Vec<(u64, &str, String, u64)> = Vec::new();
    for a in c
        .report
        .live
        .allocations
        .iter()
        .filter(|a| a.device == c.device)
    {
        let phase = c.report.phase_name(a.phase);
        let full = groups.len() >= n;
        match groups
            .iter_mut()
            .find(|g| g.0 == a.size && g.1 == a.api.name() && g.2 == phase)
        {
            Some(g) => g.3 += 1,
            None if !full => groups.push((a.size, a.api.name(), phase, 1)),
            None => {}
        }
    }
    groups
        .into_iter()
        .map(|(size, api, phase, k)| {
            format!("{} x {} by {api} in `{phase}`", count(k), bytes(size))
        })
        .collect()
}

/// What an out-of-memory failure was: fragmentation (the memory was there,
/// in pieces), a context the budget never had room for, or plain exhaustion.
fn out_of_memory(c: &DeviceCtx) -> Option<Finding> {
    let f = c.oom.as_ref()?;
    let held = pool_held(c.report, c.device);
    let free_at = c
        .report
        .oom
        .as_ref()
        .filter(|o| o.device == c.device)
        .and_then(|o| o.device_free_bytes);
    let head = format!(
        "{} of {} failed with out of memory at {}",
        f.api,
        bytes(f.size),
        duration_ms(f.t_ms)
    );
    if held >= f.size || free_at.is_some_and(|fr| fr >= f.size) {
        let mut x = Finding::new(
            "fragmentation",
            Severity::Critical,
            format!(
                "out of memory with memory free: {} held free by memory pools, {} asked",
                bytes(held),
                bytes(f.size)
            ),
        )
        .evidence(head)
        .number("failed_bytes", f.size)
        .number("pool_held_free_bytes", held);
        for p in c.report.pools.iter().filter(|p| p.device == c.device) {
            x = x.evidence(format!(
                "pool {:#x}: {} reserved, {} used, {} held free (release threshold {})",
                p.handle,
                bytes(p.reserved_bytes),
                bytes(p.used_bytes),
                bytes(p.reserved_bytes.saturating_sub(p.used_bytes)),
                if p.release_threshold == u64::MAX {
                    "never".to_string()
                } else {
                    bytes(p.release_threshold)
                }
            ));
        }
        if let Some(fr) = free_at {
            x = x
                .evidence(format!(
                    "the driver reported {} free right after the failure",
                    bytes(fr)
                ))
                .number("device_free_bytes", fr);
        }
        return Some(x.next(
            "the free memory is in holes smaller than the request: trim the pool (cudaMemPoolTrimTo / torch.cuda.empty_cache()), lower its release threshold, \
             allocate long-lived buffers first and in fewer sizes, or use expandable segments (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)",
        ));
    }
    if let Some(m) = c.model {
        let in_flight = c.phases.in_flight(f.t_ms);
        let tokens: Vec<u64> = in_flight.iter().filter_map(|q| q.tokens).collect();
        if !tokens.is_empty() {
            let share = cache::Share {
                layers: 0..m.model.layers.len(),
                rank_of: Some(m.par),
            };
            let need: u64 = tokens
                .iter()
                .map(|&t| cache::per_request(&m.model, m.kv, &share, t, m.fit.block))
                .sum();
            let longest = tokens.iter().copied().max().unwrap_or(0);
            let fit = m.fit_for(c.total(), longest, tokens.len() as u64)?;
            let budget = fit.available_bytes_per_gpu.max(0) as u64;
            if need > budget {
                let mut x = Finding::new(
                    "long_context_oom",
                    Severity::Critical,
                    format!(
                        "out of memory with {} request{} in flight: {} tokens need {} of KV cache, the budget holds {}",
                        tokens.len(),
                        if tokens.len() == 1 { "" } else { "s" },
                        count(tokens.iter().sum()),
                        bytes(need),
                        bytes(budget)
                    ),
                )
                .evidence(head)
                .number("in_flight_requests", tokens.len() as u64)
                .number("longest_request_tokens", longest)
                .number("kv_needed_bytes", need)
                .number("kv_budget_bytes", budget)
                .number("max_context_tokens", fit.max_context);
                for q in &in_flight {
                    x = x.evidence(format!(
                        "request {}: {} tokens, {} of KV on this GPU",
                        q.id,
                        q.tokens.map_or("?".into(), count),
                        q.tokens.map_or("?".into(), |t| bytes(cache::per_request(
                            &m.model,
                            m.kv,
                            &share,
                            t,
                            m.fit.block
                        )))
                    ));
                }
                x = x.evidence(format!(
                    "{} on this GPU: {} for KV after weights, activations and non-torch memory; {} concurrent request{} fit at most {} tokens each{}",
                    m.model.name,
                    bytes(budget),
                    tokens.len(),
                    if tokens.len() == 1 { "" } else { "s" },
                    count(fit.max_context),
                    if fit.max_context_limited_by == "model" { " (the model's limit)" } else { "" }
                ));
                return Some(x.next(format!(
                    "cap the context (vLLM --max-model-len {}), or budget for it: more GPUs (--tp), an fp8 KV cache, or fewer concurrent long requests; check with kvscope fit",
                    fit.max_context
                )));
            }
        }
    }
    let mut x = Finding::new("out_of_memory", Severity::Critical, head.clone())
        .number("failed_bytes", f.size)
        .number("live_bytes", c.breakdown.tracked_bytes)
        .evidence(format!(
            "{} tracked live on the device",
            bytes(c.breakdown.tracked_bytes)
        ));
    for l in largest_live(c, 5) {
        x = x.evidence(format!("live: {l}"));
    }
    Some(x.next("see the largest live allocations and the phase that made them; the oom report (kvscope-*-oom.json) holds the last allocation events before the failure"))
}

/// Memory that does not return to the baseline after requests: a leak per
/// request (a few allocations per request), or unbounded growth (many,
/// growing with the tokens served).
fn growth(c: &DeviceCtx) -> Option<Finding> {
    let (left, n, groups) = c.leftovers_of_requests();
    let done = c.phases.completed() as u64;
    if left < c.thresholds.leak_bytes.max(1) * done.max(1) {
        return None;
    }
    let group_text: Vec<String> = groups
        .iter()
        .take(4)
        .map(|(s, k)| format!("{} x {}", count(*k), bytes(*s)))
        .collect();
    let levels = c.done_levels();
    let level_text = match (c.baseline, levels.first(), levels.last()) {
        (Some(b), Some(first), Some(last)) => Some(format!(
            "live memory when no request was in flight: {} at `serve`, {} at the first such point, {} at the last ({} points)",
            bytes(b),
            bytes(first.live),
            bytes(last.live),
            levels.len()
        )),
        _ => None,
    };
    let mut x = if done > 0 && n < 4 * done {
        let per = left / done;
        Finding::new(
            "leak_per_request",
            Severity::Critical,
            format!("memory does not return to the baseline: {} more per request, {} after {} requests", bytes(per), bytes(left), done),
        )
        .number("bytes_per_request", per)
        .next("find what holds these allocations after a request ends (the api and phase above); in PyTorch, tensors kept in a list or cache outside the request")
    } else {
        let tokens = c.phases.tokens_served();
        let mut f = Finding::new(
            "unbounded_growth",
            Severity::Critical,
            format!("memory only grows while serving: {} in {} allocations never freed", bytes(left), count(n)),
        )
        .next("something caches per token or per step without a bound (a prefix or logits cache, a growing buffer): bound it or evict");
        if let Some(per) = left.checked_div(done) {
            f = f.number("bytes_per_request", per);
        }
        if let Some(per) = left.checked_div(tokens) {
            f = f.number("bytes_per_token", per).evidence(format!(
                "{} per token over {} tokens of {} completed requests",
                bytes(per),
                count(tokens),
                done
            ));
        }
        f
    };
    x = x
        .number("growth_bytes", left)
        .number("allocations", n)
        .number("requests", done)
        .evidence(format!(
            "made while serving and still live: {}",
            group_text.join(", ")
        ));
    if let Some(t) = level_text {
        x = x.evidence(t);
    }
    if let (Some(total), Some(used)) = (c.total(), c.breakdown.used_bytes) {
        let free = total.saturating_sub(used);
        if let Some(more) = free.checked_div(left / done.max(1)) {
            x = x.evidence(format!(
                "at this rate the {} still free last about {} more requests",
                bytes(free),
                count(more)
            ));
        }
    }
    Some(x)
}

/// Weights that take far more than the model needs: loaded twice.
fn baseline_too_high(c: &DeviceCtx) -> Option<Finding> {
    let m = c.model?;
    let fit = m.fit_for(c.total(), 1, 1)?;
    let expected = fit.weights_bytes_per_gpu;
    let got = c.breakdown.weights_bytes;
    let ratio = got as f64 / expected.max(1) as f64;
    if ratio < c.thresholds.weights_factor {
        return None;
    }
    Some(
        Finding::new(
            "baseline_too_high",
            Severity::Critical,
            format!("the weights take {} where {} needs {} per GPU ({:.2}x): is the model loaded twice?", bytes(got), m.model.name, bytes(expected), ratio),
        )
        .number("weights_bytes", got)
        .number("expected_weights_bytes", expected)
        .number("ratio", (ratio * 100.0).round() / 100.0)
        .evidence(format!("allocations made before serving began, not KV cache: {}", bytes(got)))
        .evidence(format!(
            "{}: {} parameters, {} per GPU at tp {} pp {}",
            m.model.name,
            count(fit.weights_params),
            bytes(expected),
            m.par.tp,
            m.par.pp
        ))
        .next("look for a second copy: a model built on the GPU before loading a checkpoint, a reference model, weights kept after conversion; compare the `load` phase's allocations"),
    )
}

/// The KV cache found, against what the model and GPU allow and what the
/// workload needs; and concurrency near the cache's limit.
fn kv_capacity(c: &DeviceCtx) -> Vec<Finding> {
    let mut out = Vec::new();
    let (Some(m), Some(tokens)) = (c.model, c.kv.capacity_tokens()) else {
        return out;
    };
    let g = &m.geometry;
    let group = c.kv.groups.iter().find(|x| x.layout != Layout::PerRequest);
    let allowed = m
        .fit_for(c.total(), 1, 1)
        .map(|f| f.available_bytes_per_gpu.max(0) as u64 / g.per_token.max(1));
    let mut info = Finding::new(
        "kv_cache",
        Severity::Info,
        format!(
            "KV cache of {} tokens ({}) found",
            count(tokens),
            bytes(c.kv.preallocated_bytes())
        ),
    )
    .number("capacity_tokens", tokens)
    .number("kv_bytes", c.kv.preallocated_bytes());
    if let Some(grp) = group {
        info = info.evidence(format!("{}: {}", grp.layout.name(), grp.describe(g)));
    }
    if let Some(a) = allowed {
        info = info.number("allowed_tokens", a).evidence(format!(
            "{} on this GPU at gpu_util {} allows about {} tokens ({} per token)",
            m.model.name,
            m.fit.gpu_util,
            count(a),
            bytes(g.per_token)
        ));
    }
    out.push(info.next("nothing to do"));

    let mean = c.phases.mean_tokens().unwrap_or(0.0).ceil() as u64;
    let want_ctx = m.fit.context.max(mean);
    let want_conc = m.fit.concurrency.max(1);
    if m.fit.context > 0 {
        let need = want_conc * want_ctx.div_ceil(g.block) * g.block;
        if need > tokens {
            out.push(
                Finding::new(
                    "kv_capacity_short",
                    Severity::Critical,
                    format!("{} requests of {} tokens need {} tokens of KV cache; it holds {}", want_conc, count(want_ctx), count(need), count(tokens)),
                )
                .number("capacity_tokens", tokens)
                .number("needed_tokens", need)
                .next("raise gpu_util, add GPUs, use an fp8 KV cache, or lower the context or the concurrency (kvscope fit shows the options)"),
            );
        }
    }
    let peak = c.phases.max_in_flight() as u64;
    if peak > 0 && mean > 0 {
        let max_conc = tokens / (mean.div_ceil(g.block) * g.block);
        if peak as f64 > c.thresholds.concurrency_frac * max_conc as f64 {
            out.push(
                Finding::new(
                    "concurrency_high",
                    Severity::Warning,
                    format!("{peak} requests in flight, over {:.0}% of the {max_conc} the KV cache holds at {} tokens", c.thresholds.concurrency_frac * 100.0, count(mean)),
                )
                .number("in_flight", peak)
                .number("max_concurrency", max_conc)
                .next("the engine will queue or preempt beyond this: add capacity or cap concurrency"),
            );
        }
    }
    out
}

/// Memory in use at the peak, counting a preallocated KV cache only as far
/// as the requests in flight fill it.
fn utilization(c: &DeviceCtx) -> Option<Finding> {
    let total = c.total()?;
    let b = &c.breakdown;
    let in_use_kv = c.model.map_or(0, |m| {
        let tokens: u64 = c
            .phases
            .requests
            .iter()
            .map(|q| {
                c.phases
                    .in_flight(q.start_ms)
                    .iter()
                    .filter_map(|r| r.tokens)
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0);
        tokens * m.geometry.per_token
    });
    let context = b
        .used_bytes
        .map_or(0, |u| u.saturating_sub(b.tracked_bytes + b.pool_held_bytes));
    let used = b.peak_bytes.saturating_sub(c.kv.preallocated_bytes())
        + in_use_kv.min(c.kv.preallocated_bytes())
        + context
        + b.pool_held_bytes;
    let frac = used as f64 / total as f64;
    let t = c.thresholds;
    let severity = if frac >= t.util_crit {
        Severity::Critical
    } else if frac >= t.util_warn {
        Severity::Warning
    } else {
        return None;
    };
    Some(
        Finding::new(
            "utilization",
            severity,
            format!(
                "memory use reached {:.0}% of the device ({} of {})",
                frac * 100.0,
                bytes(used),
                bytes(total)
            ),
        )
        .number("used_bytes", used)
        .number("total_bytes", total)
        .number("fraction", (frac * 1000.0).round() / 1000.0)
        .evidence(format!(
            "peak tracked {}{}; context and untracked {}; pools hold {} free",
            bytes(b.peak_bytes),
            if c.kv.preallocated_bytes() > 0 {
                format!(
                    " (of which the KV cache's {} counts as {} in use)",
                    bytes(c.kv.preallocated_bytes()),
                    bytes(in_use_kv.min(c.kv.preallocated_bytes()))
                )
            } else {
                String::new()
            },
            bytes(context),
            bytes(b.pool_held_bytes)
        ))
        .next("little headroom is left for spikes: see the breakdown for what to shrink"),
    )
}

fn fragmentation_alert(c: &DeviceCtx) -> Option<Finding> {
    let held = c.breakdown.pool_held_bytes;
    if held <= c.thresholds.frag_bytes {
        return None;
    }
    Some(
        Finding::new("fragmentation", Severity::Warning, format!("memory pools hold {} free (reserved - used)", bytes(held)))
            .number("pool_held_free_bytes", held)
            .next("free for the pool, unavailable to everyone else: trim it or lower its release threshold"),
    )
}

/// Requests far longer than the average.
fn context_spikes(c: &DeviceCtx, explained: Vec<String>) -> Vec<Finding> {
    let Some(mean) = c.phases.mean_tokens() else {
        return Vec::new();
    };
    let limit = mean * c.thresholds.spike_factor;
    c.phases
        .requests
        .iter()
        .filter(|q| q.tokens.is_some_and(|t| t as f64 > limit) && !explained.contains(&q.id))
        .map(|q| {
            let t = q.tokens.unwrap_or(0);
            Finding::new(
                "context_spike",
                Severity::Warning,
                format!("request {} has {} tokens, {:.1}x the average of {}", q.id, count(t), t as f64 / mean, count(mean as u64)),
            )
            .number("tokens", t)
            .number("mean_tokens", mean.round() as u64)
            .next("budget for the longest requests, not the average: kvscope fit --context with this length")
        })
        .collect()
}
