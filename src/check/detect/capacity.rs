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
