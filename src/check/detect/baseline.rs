//! Weights that take far more than the model needs: loaded twice.

use crate::check::context::DeviceCtx;
use crate::check::finding::{Facts, Finding};
use crate::check::kind::Severity;
use crate::units::Bytes;

pub fn weights_too_high(c: &DeviceCtx) -> Option<Finding> {
    let m = c.model?;
    // What counts as weights is what was live when serving began (or before
    // the KV cache): without either, or when the process failed before
    // serving began, nothing says what the allocations were.
    let first_kv = c
        .report
        .live
        .allocations
        .iter()
        .filter(|a| c.kv.addresses.contains(&a.address))
        .map(|a| a.t_ms)
        .min_by(f64::total_cmp);
    let began = c.phases.serve_ms.or(first_kv);
    match (began, &c.oom) {
        (None, _) => return None,
        (Some(t), Some(f)) if f.t_ms < t => return None,
        _ => {}
    }
    let fit = m.fit_for(c.total(), 1, 1)?;
    let expected = fit.weights_bytes_per_gpu;
    let got = c.breakdown.weights_bytes;
    let ratio = got as f64 / expected.max(1) as f64;
    if ratio < c.thresholds.weights_factor {
        return None;
    }
    Some(Finding::new(
        Severity::Critical,
        Facts::BaselineTooHigh {
            weights: Bytes(got),
            expected: Bytes(expected),
            ratio,
            model: m.model.name.clone(),
            params: fit.weights_params,
            tp: m.par.tp,
            pp: m.par.pp,
        },
    ))
}

#[cfg(test)]
mod tests {
    use crate::check::finding::Facts;
    use crate::check::testkit::*;
    use crate::units::Bytes;

    fn weights(bytes: u64) -> crate::report::Report {
        ReportBuilder::new().alloc(bytes).marker("serve").build()
    }

    #[test]
    fn weights_loaded_twice_are_found() {
        let found = detect(&weights(32 * GIB), Some(&llama(80 * GIB, 0, 1)));
        let Facts::BaselineTooHigh {
            weights, expected, ..
        } = &found[0].facts
        else {
            panic!("{found:?}")
        };
        assert_eq!(*weights, Bytes(32 * GIB));
        // llama-3.1-8b in bf16: 8,030,261,248 parameters x 2 bytes.
        assert_eq!(*expected, Bytes(2 * 8_030_261_248));
    }

    #[test]
    fn weights_the_model_needs_are_fine() {
        assert!(detect(&weights(16 * GIB), Some(&llama(80 * GIB, 0, 1))).is_empty());
        assert!(detect(&weights(32 * GIB), None).is_empty());
    }
}
