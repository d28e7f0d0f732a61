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

#[cfg(test)]
mod tests {
    use crate::check::finding::Facts;
    use crate::check::testkit::*;
    use crate::report::Report;
    use crate::units::Bytes;

    /// Weights, `serve`, then four requests in turn, each leaving `n` x `size`.
    fn served(size: u64, n: u64) -> Report {
        let mut b = ReportBuilder::new().alloc(16 * GIB).marker("serve");
        for id in ["a", "b", "c", "d"] {
            b = b.start(id, 100).allocs(size, n).done(id);
        }
        b.build()
    }

    #[test]
    fn a_few_allocations_kept_per_request_are_a_leak() {
        let found = detect(&served(64 * MIB, 1), None);
        let Facts::LeakPerRequest {
            growth,
            per_request,
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(*per_request, Bytes(64 * MIB));
        assert_eq!((growth.bytes, growth.requests), (Bytes(256 * MIB), 4));
        let levels = growth.levels.as_ref().unwrap();
        assert_eq!(
            (levels.baseline, levels.last),
            (Bytes(16 * GIB), Bytes(16 * GIB + 256 * MIB))
        );
    }

    #[test]
    fn many_allocations_kept_are_unbounded_growth() {
        let found = detect(&served(2 * MIB, 8), None);
        let Facts::UnboundedGrowth {
            growth, per_token, ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(growth.allocations, 32);
        // 64 MiB over 400 tokens served.
        assert_eq!(*per_token, Some(Bytes(64 * MIB / 400)));
    }

    #[test]
    fn requests_that_give_their_memory_back_grow_nothing() {
        assert!(detect(&served(MIB, 0), None).is_empty());
        // Below the threshold (1 MiB per request): not a leak.
        assert!(detect(&served(MIB / 2, 1), None).is_empty());
    }
}
