//! Memory that does not return to the baseline after requests: a leak per
//! request (a few allocations per request), or unbounded growth (many,
//! growing with the tokens served).

use crate::check::context::DeviceCtx;
use crate::check::finding::{Facts, Finding, Growth, IdleLevels};
use crate::check::kind::Severity;
use crate::units::Bytes;

pub fn growth(c: &DeviceCtx) -> Option<Finding> {
    let (left, n, groups) = c.leftovers_of_requests();
    let done = c.phases.completed() as u64;
    if left < c.thresholds.leak_bytes.max(1) * done.max(1) {
        return None;
    }
    let levels = c.done_levels();
    let levels = match (c.baseline, levels.first(), levels.last()) {
        (Some(b), Some(first), Some(last)) => Some(IdleLevels {
            baseline: Bytes(b),
            first: Bytes(first.live),
            last: Bytes(last.live),
            points: levels.len() as u64,
        }),
        _ => None,
    };
    let runway = match (c.total(), c.breakdown.used_bytes) {
        (Some(total), Some(used)) => {
            let free = total.saturating_sub(used);
            free.checked_div(left / done.max(1))
                .map(|more| (Bytes(free), more))
        }
        _ => None,
    };
    let growth = Growth {
        bytes: Bytes(left),
        allocations: n,
        requests: done,
        groups: groups.iter().take(4).map(|&(s, k)| (Bytes(s), k)).collect(),
        levels,
        runway,
    };
    // A few allocations per request is what a request keeps; many more grow
    // with the tokens.
    let facts = if done > 0 && n < 4 * done {
        Facts::LeakPerRequest {
            growth,
            per_request: Bytes(left / done),
        }
    } else {
        Facts::UnboundedGrowth {
            growth,
            per_request: left.checked_div(done).map(Bytes),
            per_token: left.checked_div(c.phases.tokens_served()).map(Bytes),
            tokens_served: c.phases.tokens_served(),
        }
    };
    Some(Finding::new(Severity::Critical, facts))
}
