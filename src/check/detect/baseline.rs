//! Weights that take far more than the model needs: loaded twice.

use crate::check::context::DeviceCtx;
use crate::check::finding::{Facts, Finding};
use crate::check::kind::Severity;
use crate::units::Bytes;

/// The reports do not look like the model: said instead of the findings
/// built on it (`DeviceCtx::new` leaves the model out).
pub fn model_mismatch(c: &DeviceCtx) -> Option<Finding> {
    c.mismatch
        .clone()
        .map(|m| Finding::new(Severity::Warning, Facts::ModelMismatch(m)))
}

pub fn weights_too_high(c: &DeviceCtx) -> Option<Finding> {
    let m = c.model?;
    // What counts as weights is what was live when serving began (or before
    // the KV cache): without either, or when the process failed before
    // serving began, nothing says what the allocations were.
    if !c.weights_known() {
        return None;
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

    fn preset(name: &str) -> crate::check::context::ModelCtx {
        crate::check::context::ModelCtx::new(
            crate::kv::source::preset(name).unwrap(),
            crate::kv::fit::FitInput {
                gpu_mem: 80 * GIB,
                ..Default::default()
            },
        )
    }

    /// llama-3.1-8b served vLLM-style on 80 GiB: 15 GiB of weights (one
    /// tensor per layer, loaded layer by layer), then 32 paged KV tensors
    /// of 27,520 pages of 64 KiB (55 GiB).
    fn vllm_llama() -> crate::report::Report {
        let mut b = ReportBuilder::new();
        for _ in 0..32 {
            b = b.alloc(400 * MIB).alloc(80 * MIB);
        }
        b.alloc(GIB)
            .allocs(27_520 * 64 * 1024, 32)
            .marker("serve")
            .build()
    }

    fn kinds(found: &[crate::check::finding::Finding]) -> Vec<&'static str> {
        found.iter().map(|f| f.kind().as_str()).collect()
    }

    #[test]
    fn the_right_model_is_not_a_mismatch() {
        let found = detect(&vllm_llama(), Some(&preset("llama-3.1-8b")));
        assert_eq!(kinds(&found), ["kv_cache"], "{found:?}");
    }

    #[test]
    fn a_model_too_big_for_the_weights_is_a_mismatch() {
        let found = detect(&vllm_llama(), Some(&preset("llama-3.1-70b")));
        assert_eq!(kinds(&found), ["model_mismatch"], "{found:?}");
        let Facts::ModelMismatch(m) = &found[0].facts else {
            panic!("{found:?}")
        };
        assert!(m
            .why
            .iter()
            .any(|w| matches!(w, crate::check::finding::Mismatch::Weights { .. })));
        // The step says so instead of "ok".
        let steps = with_ctx(
            &vllm_llama(),
            Some(&preset("llama-3.1-70b")),
            Default::default(),
            |c| crate::check::steps::run(c, &found),
        );
        assert_eq!(steps[0].status, crate::check::steps::Status::Skipped);
        assert!(steps[0].detail.contains("does not look like llama-3.1-70b"));
    }

    #[test]
    fn another_models_kv_geometry_is_a_mismatch() {
        // qwen2.5-7b: 28 layers, 4 KV heads; the cache has 32 tensors.
        let found = detect(&vllm_llama(), Some(&preset("qwen2.5-7b-instruct")));
        assert_eq!(kinds(&found), ["model_mismatch"], "{found:?}");
        let Facts::ModelMismatch(m) = &found[0].facts else {
            panic!("{found:?}")
        };
        assert!(matches!(
            m.why[0],
            crate::check::finding::Mismatch::KvShape { tensors: 32, .. }
        ));
    }

    #[test]
    fn without_a_model_the_cache_is_not_weights_nor_a_utilisation_alert() {
        let r = vllm_llama();
        let (weights, kv) = with_ctx(&r, None, Default::default(), |c| {
            (c.breakdown.weights_bytes, c.kv.preallocated_bytes())
        });
        assert_eq!(kv, 32 * 27_520 * 64 * 1024);
        assert!(weights < 17 * GIB, "{weights}");
        assert!(detect(&r, None).is_empty(), "{:?}", detect(&r, None));
    }
}
