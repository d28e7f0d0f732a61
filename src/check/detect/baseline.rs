//! Weights that take far more than the model needs: loaded twice.

use crate::check::context::DeviceCtx;
use crate::check::finding::{Facts, Finding};
use crate::check::kind::Severity;
use crate::units::Bytes;

pub fn weights_too_high(c: &DeviceCtx) -> Option<Finding> {
    let m = c.model?;
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
