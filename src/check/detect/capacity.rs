//! The KV cache found, against what the model and GPU allow and what the
//! workload needs; and concurrency near the cache's limit.

use crate::check::context::DeviceCtx;
use crate::check::finding::{Facts, Finding, KvAllowed, KvGroupShape};
use crate::check::kind::Severity;
use crate::check::kv_detect::Layout;
use crate::units::Bytes;

pub fn kv_capacity(c: &DeviceCtx) -> Vec<Finding> {
    let mut out = Vec::new();
    let (Some(m), Some(tokens)) = (c.model, c.kv.capacity_tokens()) else {
        return out;
    };
    let g = &m.geometry;
    let group =
        c.kv.groups
            .iter()
            .find(|x| x.layout != Layout::PerRequest)
            .map(|grp| KvGroupShape {
                layout: grp.layout,
                tensors: grp.tensors,
                tensor_bytes: Bytes(grp.tensor_bytes),
                tokens: grp.tokens,
                page: Bytes(g.page),
                token_row: Bytes(g.token_row),
                block: g.block,
                stage_layers: g.layers_per_stage.iter().copied().max().unwrap_or(1),
            });
    let allowed = m.fit_for(c.total(), 1, 1).map(|f| KvAllowed {
        tokens: f.available_bytes_per_gpu.max(0) as u64 / g.per_token.max(1),
        model: m.model.name.clone(),
        gpu_util: m.fit.gpu_util,
        per_token: Bytes(g.per_token),
    });
    out.push(Finding::new(
        Severity::Info,
        Facts::KvCache {
            capacity_tokens: tokens,
            bytes: Bytes(c.kv.preallocated_bytes()),
            group,
            allowed,
        },
    ));

    let mean = c.phases.mean_tokens().unwrap_or(0.0).ceil() as u64;
    let want_ctx = m.fit.context.max(mean);
    let want_conc = m.fit.concurrency.max(1);
    if m.fit.context > 0 {
        let need = want_conc * want_ctx.div_ceil(g.block) * g.block;
        if need > tokens {
            out.push(Finding::new(
                Severity::Critical,
                Facts::KvCapacityShort {
                    concurrency: want_conc,
                    context: want_ctx,
                    needed_tokens: need,
                    capacity_tokens: tokens,
                },
            ));
        }
    }
    let peak = c.phases.max_in_flight() as u64;
    if peak > 0 && mean > 0 {
        let max_conc = tokens / (mean.div_ceil(g.block) * g.block);
        if peak as f64 > c.thresholds.concurrency_frac * max_conc as f64 {
            out.push(Finding::new(
                Severity::Warning,
                Facts::ConcurrencyHigh {
                    in_flight: peak,
                    max_concurrency: max_conc,
                    threshold: c.thresholds.concurrency_frac,
                    mean_tokens: mean,
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::check::finding::Facts;
    use crate::check::kind::FindingKind;
    use crate::check::testkit::*;

    /// llama-3.1-8b's paged KV cache of `pages` 16-token pages per layer
    /// (one page of one layer: 16 x 2 x 8 KV heads x 128 x 2 bytes = 64 KiB),
    /// then `requests` of 1,000 tokens in flight at once.
    fn paged(pages: u64, requests: u64) -> crate::report::Report {
        let mut b = ReportBuilder::new()
            .alloc(16 * GIB)
            .allocs(pages * 64 * 1024, 32)
            .marker("serve");
        for i in 0..requests {
            b = b.start(&i.to_string(), 1000);
        }
        b.build()
    }

    fn kinds(r: &crate::report::Report, context: u64, concurrency: u64) -> Vec<FindingKind> {
        detect(r, Some(&llama(80 * GIB, context, concurrency)))
            .iter()
            .map(|f| f.kind())
            .collect()
    }

    #[test]
    fn a_paged_cache_is_found_with_its_capacity() {
        let found = detect(&paged(1000, 1), Some(&llama(80 * GIB, 0, 1)));
        let Facts::KvCache {
            capacity_tokens,
            group,
            allowed,
            ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(*capacity_tokens, 16_000);
        assert_eq!(group.as_ref().unwrap().tensors, 32);
        assert!(allowed.as_ref().unwrap().tokens > 16_000);
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn a_cache_too_small_for_the_workload_is_short() {
        // 64 requests of 8,192 tokens need 524,288 tokens.
        assert!(kinds(&paged(1000, 1), 8192, 64).contains(&FindingKind::KvCapacityShort));
        assert!(!kinds(&paged(1000, 1), 8192, 1).contains(&FindingKind::KvCapacityShort));
    }

    #[test]
    fn concurrency_near_the_caches_limit_is_an_alert() {
        // 16,000 tokens hold 15 requests of 1,008 (1,000 in whole pages); 80% is 12.
        assert!(kinds(&paged(1000, 13), 0, 1).contains(&FindingKind::ConcurrencyHigh));
        assert!(!kinds(&paged(1000, 12), 0, 1).contains(&FindingKind::ConcurrencyHigh));
    }

    #[test]
    fn without_a_model_or_a_cache_nothing_is_said() {
        assert!(detect(&paged(1000, 13), None).is_empty());
        let no_cache = ReportBuilder::new().alloc(16 * GIB).marker("serve").build();
        assert!(kinds(&no_cache, 8192, 64).is_empty());
    }
}
