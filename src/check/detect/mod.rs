//! The problem detectors and the alerts of one device, one module per family
//! of question: why did it run out of memory (`oom`), does memory return
//! after requests (`growth`), are the weights what the model needs
//! (`baseline`), is the KV cache big enough (`capacity`), and the threshold
//! alerts of a run that did not fail (`alerts`). Across processes: `balance`.

mod alerts;
pub mod balance;
mod baseline;
mod capacity;
mod growth;
mod oom;

use super::context::DeviceCtx;
use super::finding::Finding;

pub fn run(c: &DeviceCtx) -> Vec<Finding> {
    let mut out = Vec::new();
    let oom = oom::out_of_memory(c);
    // Requests in flight at an explained failure are not spikes of their own.
    let oom_requests = oom.as_ref().and(c.oom.as_ref()).map(|f| {
        c.phases
            .in_flight(f.t_ms)
            .iter()
            .map(|q| q.id.clone())
            .collect::<Vec<_>>()
    });
    out.extend(oom);
    out.extend(growth::growth(c));
    out.extend(baseline::model_mismatch(c));
    out.extend(baseline::weights_too_high(c));
    out.extend(capacity::kv_capacity(c));
    if !out.iter().any(|f| f.kind().explains_oom()) {
        out.extend(alerts::utilization(c));
        out.extend(alerts::pools_hold_free(c));
        out.extend(alerts::framework_cache(c));
    }
    out.extend(alerts::context_spikes(c, &oom_requests.unwrap_or_default()));
    for f in &mut out {
        f.device = Some(c.device);
    }
    out
}
