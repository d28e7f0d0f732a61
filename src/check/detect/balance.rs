//! Processes of one job (tensor-parallel ranks) should hold the same.

use crate::check::finding::{Facts, Finding, RankLoad};
use crate::check::kind::Severity;

/// `loads`: each process's label, KV capacity in tokens (0 without one) and
/// peak bytes.
pub fn balance(loads: &[RankLoad]) -> Option<Finding> {
    if loads.len() < 2 {
        return None;
    }
    let spread = |v: Vec<u64>| {
        let (lo, hi) = (*v.iter().min()?, *v.iter().max()?);
        (hi > 0).then(|| (hi - lo) as f64 / hi as f64)
    };
    let peaks = spread(loads.iter().map(|x| x.peak.0).collect()).unwrap_or(0.0);
    let caps = spread(loads.iter().map(|x| x.kv_tokens).collect()).unwrap_or(0.0);
    if peaks <= 0.10 && caps <= 0.01 {
        return None;
    }
    Some(Finding::new(
        Severity::Warning,
        Facts::RankImbalance {
            peak_spread: peaks,
            capacity_spread: caps,
            ranks: loads.to_vec(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::balance;
    use crate::check::finding::{Facts, RankLoad};
    use crate::units::Bytes;

    fn rank(i: u32, kv_tokens: u64, peak: u64) -> RankLoad {
        RankLoad {
            label: format!("rank {i}"),
            kv_tokens,
            peak: Bytes(peak),
        }
    }

    #[test]
    fn ranks_that_differ_are_flagged() {
        let f = balance(&[rank(0, 1000, 100), rank(1, 1000, 150)]).unwrap();
        let Facts::RankImbalance {
            peak_spread, ranks, ..
        } = &f.facts
        else {
            panic!("{f:?}")
        };
        assert!((peak_spread - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(ranks.len(), 2);
        assert!(balance(&[rank(0, 1000, 100), rank(1, 900, 100)]).is_some());
    }

    #[test]
    fn ranks_alike_or_alone_are_not() {
        assert!(balance(&[rank(0, 1000, 100), rank(1, 1000, 105)]).is_none());
        assert!(balance(&[rank(0, 1000, 100)]).is_none());
    }
}
