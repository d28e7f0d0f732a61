//! Why an out-of-memory failure happened: fragmentation (the memory was
//! there, in pieces), a context the budget never had room for, or plain
//! exhaustion.

use crate::check::breakdown::pool_held;
use crate::check::context::DeviceCtx;
use crate::check::finding::{
    Facts, Finding, FrameworkCache, LiveGroup, OomFailure, PoolFree, RequestKv,
};
use crate::check::kind::Severity;
use crate::kv::cache;
use crate::units::Bytes;

pub fn out_of_memory(c: &DeviceCtx) -> Option<Finding> {
    let f = c.oom.as_ref()?;
    let held = pool_held(c.report, c.device);
    let free_at = c
        .report
        .oom
        .as_ref()
        .filter(|o| o.device == c.device)
        .and_then(|o| o.device_free_bytes);
    let failure = OomFailure {
        api: f.api.clone(),
        size: Bytes(f.size),
        t_ms: f.t_ms,
    };
    if held >= f.size || free_at.is_some_and(|fr| fr >= f.size) {
        let pools = c
            .report
            .pools
            .iter()
            .filter(|p| p.device == c.device)
            .map(|p| PoolFree {
                handle: p.handle,
                reserved: Bytes(p.reserved_bytes),
                used: Bytes(p.used_bytes),
                release_threshold: (p.release_threshold != u64::MAX)
                    .then_some(Bytes(p.release_threshold)),
            })
            .collect();
        return Some(Finding::new(
            Severity::Critical,
            Facts::OomWithMemoryFree {
                failure,
                pool_held: Bytes(held),
                pools,
                device_free: free_at.map(Bytes),
            },
        ));
    }
    // The framework's counters near the failure: memory it held reserved but
    // unallocated, in pieces of its cache too small for what it asked.
    if let Some(cache) = framework_at(c, f.t_ms) {
        // The counters may predate the failure (they are sampled), and an
        // allocator that retries after freeing its cache (PyTorch does) has
        // given the cache back by then: what CUDA still held at the failure,
        // beyond the allocated bytes, bounds what the cache can have held.
        let held_then = c
            .report
            .oom
            .as_ref()
            .filter(|o| o.device == c.device)
            .map_or(u64::MAX, |o| o.live_bytes.saturating_sub(cache.allocated.0));
        if cache.unallocated().0.min(held_then) >= f.size {
            return Some(Finding::new(
                Severity::Critical,
                Facts::OomInFrameworkCache {
                    failure,
                    cache,
                    tracked_live: Bytes(c.breakdown.tracked_bytes),
                },
            ));
        }
    }
    // When the model cannot answer for this GPU, nothing is said at all.
    if let Some(x) = long_context(c, &failure).ok()? {
        return Some(x);
    }
    Some(Finding::new(
        Severity::Critical,
        Facts::OutOfMemory {
            failure,
            tracked_live: Bytes(c.breakdown.tracked_bytes),
            largest: largest_live(c, 5),
        },
    ))
}

/// The framework's counters within a second (or two sampling periods) of
/// `t_ms`: the last taken at or before it, else the nearest after. Counters
/// taken after the failure count the failed request's tensors, freed into
/// the cache by then, as cache: never the better reading.
fn framework_at(c: &DeviceCtx, t_ms: f64) -> Option<FrameworkCache> {
    let window = (2 * c.report.shim.sample_ms).max(1000) as f64;
    let before = c
        .levels
        .iter()
        .filter_map(|l| l.framework.as_ref())
        .filter(|f| f.sampled_t_ms <= t_ms && t_ms - f.sampled_t_ms <= window)
        .max_by(|a, b| a.sampled_t_ms.total_cmp(&b.sampled_t_ms));
    before
        .or_else(|| c.framework_near(t_ms, window))
        .map(|f| FrameworkCache {
            allocated: Bytes(f.allocated_bytes),
            reserved: Bytes(f.reserved_bytes),
        })
}

/// The model had no answer for this GPU's budget.
struct NoFit;

/// The requests in flight at the failure need more KV than the budget holds.
fn long_context(c: &DeviceCtx, failure: &OomFailure) -> Result<Option<Finding>, NoFit> {
    let Some(m) = c.model else {
        return Ok(None);
    };
    let in_flight = c.phases.in_flight(failure.t_ms);
    let tokens: Vec<u64> = in_flight.iter().filter_map(|q| q.tokens).collect();
    if tokens.is_empty() {
        return Ok(None);
    }
    let share = cache::Share {
        layers: 0..m.model.layers.len(),
        rank_of: Some(m.par),
    };
    let kv_of = |t: u64| cache::per_request(&m.model, m.kv, &share, t, m.fit.block);
    let need: u64 = tokens.iter().map(|&t| kv_of(t)).sum();
    let longest = tokens.iter().copied().max().unwrap_or(0);
    let fit = m
        .fit_for(c.total(), longest, tokens.len() as u64)
        .ok_or(NoFit)?;
    let budget = fit.available_bytes_per_gpu.max(0) as u64;
    if need <= budget {
        return Ok(None);
    }
    Ok(Some(Finding::new(
        Severity::Critical,
        Facts::LongContextOom {
            failure: failure.clone(),
            in_flight: in_flight
                .iter()
                .map(|q| RequestKv {
                    id: q.id.clone(),
                    tokens: q.tokens,
                    kv: q.tokens.map(|t| Bytes(kv_of(t))),
                })
                .collect(),
            sized_requests: tokens.len() as u64,
            total_tokens: tokens.iter().sum(),
            longest_tokens: longest,
            kv_needed: Bytes(need),
            kv_budget: Bytes(budget),
            model: m.model.name.clone(),
            max_context: fit.max_context,
            max_context_is_models_limit: fit.max_context_limited_by == "model",
        },
    )))
}

/// The largest live allocations, grouped by size, entry point and phase.
fn largest_live(c: &DeviceCtx, n: usize) -> Vec<LiveGroup> {
    let mut groups: Vec<LiveGroup> = Vec::new();
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
            .find(|g| g.size.0 == a.size && g.api == a.api.name() && g.phase == phase)
        {
            Some(g) => g.count += 1,
            None if !full => groups.push(LiveGroup {
                size: Bytes(a.size),
                api: a.api.name(),
                phase,
                count: 1,
            }),
            None => {}
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use crate::check::context::Thresholds;
    use crate::check::finding::Facts;
    use crate::check::kind::FindingKind;
    use crate::check::testkit::*;
    use crate::units::Bytes;

    fn kinds(r: &crate::report::Report, big: bool) -> Vec<FindingKind> {
        let m = llama(40 * GIB, 0, 1);
        detect(r, big.then_some(&m))
            .iter()
            .map(|f| f.kind())
            .collect()
    }

    #[test]
    fn memory_held_free_by_pools_is_fragmentation() {
        let r = ReportBuilder::new()
            .alloc(GIB)
            .pool(4 * GIB, GIB)
            .oom(64 * MIB)
            .build();
        let found = detect(&r, None);
        let Facts::OomWithMemoryFree {
            failure,
            pool_held,
            pools,
            ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(
            (failure.size, *pool_held),
            (Bytes(64 * MIB), Bytes(3 * GIB))
        );
        assert_eq!(pools.len(), 1);
        assert_eq!(found[0].kind(), FindingKind::Fragmentation);
    }

    #[test]
    fn requests_beyond_the_budget_are_a_long_context_oom() {
        let r = ReportBuilder::new()
            .total(40 * GIB)
            .alloc(16 * GIB)
            .marker("serve")
            .start("long", 200_000)
            .oom(GIB)
            .build();
        let found = detect(&r, Some(&llama(40 * GIB, 0, 1)));
        let Facts::LongContextOom {
            kv_needed,
            longest_tokens,
            ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        // 200,000 tokens x 128 KiB of KV per token.
        assert_eq!(*kv_needed, Bytes(200_000 * 131_072));
        assert_eq!(*longest_tokens, 200_000);
    }

    #[test]
    fn an_oom_without_explanation_lists_the_largest_live() {
        let r = ReportBuilder::new()
            .allocs(GIB, 3)
            .alloc(MIB)
            .oom(GIB)
            .build();
        let found = detect(&r, None);
        let Facts::OutOfMemory {
            tracked_live,
            largest,
            ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(*tracked_live, Bytes(3 * GIB + MIB));
        assert_eq!((largest[0].count, largest[0].size), (3, Bytes(GIB)));
        // With a model (its weights loaded) but requests that fit, still a
        // plain out-of-memory.
        let r = ReportBuilder::new()
            .alloc(15 * GIB)
            .marker("serve")
            .start("a", 100)
            .oom(GIB)
            .build();
        assert_eq!(kinds(&r, true), [FindingKind::OutOfMemory]);
    }

    #[test]
    fn no_failure_no_oom_finding() {
        let r = ReportBuilder::new().alloc(GIB).pool(GIB, GIB).build();
        let none = with_ctx(&r, None, Thresholds::default(), |c| {
            super::out_of_memory(c).is_none()
        });
        assert!(none);
        assert!(kinds(&r, true).iter().all(|k| !k.explains_oom()));
    }

    #[test]
    fn the_cache_at_an_oom_is_read_from_counters_taken_before_it() {
        // Before the failure PyTorch holds no cache; after it, the failed
        // request's tensors are freed into the cache: not the state it failed in.
        let r = ReportBuilder::new()
            .counters(GIB, GIB)
            .alloc(GIB)
            .marker("serve")
            .oom(GIB)
            .counters(0, 3 * GIB)
            .marker("after")
            .build();
        let found = detect(&r, None);
        assert!(
            !found
                .iter()
                .any(|f| matches!(f.facts, Facts::OomInFrameworkCache { .. })),
            "{found:?}"
        );
        // Counters taken only after it are still read (the nearest there is).
        let r = ReportBuilder::new()
            .alloc(GIB)
            .marker("serve")
            .oom(GIB)
            .counters(0, 3 * GIB)
            .marker("after")
            .build();
        let found = detect(&r, None);
        assert!(
            found
                .iter()
                .any(|f| matches!(f.facts, Facts::OomInFrameworkCache { .. })),
            "{found:?}"
        );
    }
}
