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
