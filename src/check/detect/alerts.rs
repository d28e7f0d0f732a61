//! Threshold alerts on a run that did not fail: memory use near the device's
//! size, pools holding much free, requests far longer than the average.

use crate::check::context::DeviceCtx;
use crate::check::finding::{Facts, Finding, FrameworkCache};
use crate::check::kind::Severity;
use crate::units::Bytes;

/// Memory in use at the peak, counting a preallocated KV cache only as far
/// as the requests in flight fill it.
pub fn utilization(c: &DeviceCtx) -> Option<Finding> {
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
    let preallocated = c.kv.preallocated_bytes();
    let used = b.peak_bytes.saturating_sub(preallocated)
        + in_use_kv.min(preallocated)
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
    Some(Finding::new(
        severity,
        Facts::Utilization {
            used: Bytes(used),
            total: Bytes(total),
            fraction: frac,
            peak_tracked: Bytes(b.peak_bytes),
            kv_preallocated: Bytes(preallocated),
            kv_in_use: Bytes(in_use_kv.min(preallocated)),
            context_untracked: Bytes(context),
            pool_held: Bytes(b.pool_held_bytes),
        },
    ))
}

/// Memory pools holding more free than the threshold.
pub fn pools_hold_free(c: &DeviceCtx) -> Option<Finding> {
    let held = c.breakdown.pool_held_bytes;
    (held > c.thresholds.frag_bytes).then(|| {
        Finding::new(
            Severity::Warning,
            Facts::PoolsHoldFree {
                pool_held: Bytes(held),
            },
        )
    })
}

/// The framework's allocator holding more reserved but unallocated than the
/// threshold, at its latest counters.
pub fn framework_cache(c: &DeviceCtx) -> Option<Finding> {
    let f = c.framework_last()?;
    let cache = FrameworkCache {
        allocated: Bytes(f.allocated_bytes),
        reserved: Bytes(f.reserved_bytes),
    };
    (cache.unallocated().0 > c.thresholds.frag_bytes).then(|| {
        Finding::new(
            Severity::Warning,
            Facts::FrameworkCacheHeld {
                cache,
                t_ms: f.sampled_t_ms,
            },
        )
    })
}

/// Requests far longer than the average, but those an out-of-memory
/// finding already explains (`explained`: their ids).
pub fn context_spikes(c: &DeviceCtx, explained: &[String]) -> Vec<Finding> {
    let Some(mean) = c.phases.mean_tokens() else {
        return Vec::new();
    };
    let limit = mean * c.thresholds.spike_factor;
    c.phases
        .requests
        .iter()
        .filter(|q| q.tokens.is_some_and(|t| t as f64 > limit) && !explained.contains(&q.id))
        .map(|q| {
            Finding::new(
                Severity::Warning,
                Facts::ContextSpike {
                    request: q.id.clone(),
                    tokens: q.tokens.unwrap_or(0),
                    mean_tokens: mean,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::check::finding::Facts;
    use crate::check::kind::{FindingKind, Severity};
    use crate::check::testkit::*;

    fn on_10_gib(peak: u64) -> Vec<(FindingKind, Severity)> {
        let r = ReportBuilder::new()
            .total(10 * GIB)
            .alloc(GIB)
            .peak(peak)
            .build();
        detect(&r, None)
            .iter()
            .map(|f| (f.kind(), f.severity))
            .collect()
    }

    #[test]
    fn utilization_is_graded_by_the_thresholds() {
        let util = FindingKind::Utilization;
        assert_eq!(on_10_gib(19 * GIB / 2), [(util, Severity::Critical)]);
        assert_eq!(on_10_gib(17 * GIB / 2), [(util, Severity::Warning)]);
        assert!(on_10_gib(5 * GIB).is_empty());
        // Memory the driver sees in use beyond what was tracked counts too.
        let r = ReportBuilder::new()
            .total(10 * GIB)
            .alloc(GIB)
            .used(19 * GIB / 2)
            .build();
        let found = detect(&r, None);
        let Facts::Utilization {
            context_untracked, ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(context_untracked.0, 17 * GIB / 2);
        assert_eq!(found[0].severity, Severity::Critical);
    }

    #[test]
    fn pools_holding_much_free_are_an_alert() {
        let r = ReportBuilder::new().alloc(GIB).pool(4 * GIB, GIB).build();
        let found = detect(&r, None);
        assert_eq!(found.len(), 1);
        assert!(matches!(found[0].facts, Facts::PoolsHoldFree { .. }));
        assert_eq!(found[0].kind(), FindingKind::Fragmentation);
        let r = ReportBuilder::new().alloc(GIB).pool(2 * GIB, GIB).build();
        assert!(detect(&r, None).is_empty());
    }

    #[test]
    fn requests_far_above_the_average_are_spikes() {
        let r = ReportBuilder::new()
            .alloc(GIB)
            .marker("serve")
            .start("a", 100)
            .done("a")
            .start("b", 100)
            .done("b")
            .start("c", 1000)
            .done("c")
            .build();
        let found = detect(&r, None);
        assert_eq!(found.len(), 1);
        let Facts::ContextSpike {
            request, tokens, ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!((request.as_str(), *tokens), ("c", 1000));
        let even = ReportBuilder::new()
            .marker("serve")
            .start("a", 100)
            .start("b", 150)
            .build();
        assert!(detect(&even, None).is_empty());
    }
}
