//! Growth read over stretches that hold several requests at once (what
//! `kvscope diagnose`'s step 3 leaves: concurrent requests end in one
//! stretch with no quiet point between them).

use crate::check::kind::{FindingKind, Severity};
use crate::check::testkit::*;

#[test]
fn four_concurrent_requests_keeping_four_times_one_are_a_leak_per_request() {
    // 8 MiB kept per request: two alone, then four at once (one stretch of
    // 4 x 256 tokens, 32 MiB). Per stretch, growth follows the tokens; per
    // request it is flat: a leak per request, not unbounded growth.
    let mut b = ReportBuilder::new().alloc(16 * GIB).marker("serve");
    for id in ["a", "b", "c"] {
        b = b.start(id, 256).alloc(8 * MIB).done(id);
    }
    for id in ["d", "e", "f", "g"] {
        b = b.start(id, 256);
    }
    b = b.allocs(8 * MIB, 4);
    for id in ["d", "e", "f", "g"] {
        b = b.done(id);
    }
    let found: Vec<_> = detect(&b.build(), None)
        .iter()
        .map(|f| (f.kind(), f.severity))
        .collect();
    assert!(
        found.contains(&(FindingKind::LeakPerRequest, Severity::Critical)),
        "{found:?}"
    );
    assert!(!found.iter().any(|f| f.0 == FindingKind::UnboundedGrowth));
}
