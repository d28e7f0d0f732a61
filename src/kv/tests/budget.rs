//! The engine budget and data-parallel replicas.

use super::support::*;
use crate::kv::cache::Parallel;
use crate::kv::fit::{fit, FitInput};

#[test]
fn the_budget_adds_up() {
    let m = preset("llama-3.1-8b");
    let f = fit(
        &m,
        &FitInput {
            context: 8192,
            concurrency: 16,
            activation: Some(1 << 30),
            ..FitInput::default()
        },
    )
    .unwrap();
    let weights = 2 * 8_030_261_248i64;
    // 80 GiB x 0.9 - weights - 1 GiB activations - 512 MiB non-torch.
    let avail = (80.0 * 1073741824.0 * 0.9) as i64 - weights - (1 << 30) - (512 << 20);
    assert_eq!(f.available_bytes_per_gpu, avail);
    // 16 requests x 8,192 tokens x 128 KiB.
    assert_eq!(f.kv_needed_bytes_per_gpu, 16 << 30);
    assert_eq!(f.headroom_bytes_per_gpu, avail - (16 << 30));
    assert!(f.will_fit);
    assert_eq!(f.max_concurrency, avail as u64 / (1 << 30));
    // Longest context for 16 requests: the budget over 16 x 128 KiB, down to a whole block.
    assert_eq!(f.max_context, (avail as u64 / 16 / 131_072) / 16 * 16);
    // Simple audit: 80 GiB - weights - 512 MiB - 4 GiB (5%).
    assert_eq!(
        f.budget.audit_available_bytes_per_gpu,
        (80i64 << 30) - weights - (512 << 20) - (4 << 30)
    );
    // All of a sliding-window model's requests fit up to the model's limit.
    let f = fit(
        &preset("mistral-7b-v0.1"),
        &FitInput {
            context: 8192,
            concurrency: 4,
            ..FitInput::default()
        },
    )
    .unwrap();
    assert_eq!(
        (f.max_context, f.max_context_limited_by.as_str()),
        (32_768, "model")
    );
}

#[test]
fn data_parallel_replicas_share_the_requests() {
    let m = preset("llama-3.1-8b");
    let one = fit(
        &m,
        &FitInput {
            context: 8192,
            concurrency: 10,
            gpus: 1,
            ..FitInput::default()
        },
    )
    .unwrap();
    let two = fit(
        &m,
        &FitInput {
            context: 8192,
            concurrency: 10,
            gpus: 2,
            ..FitInput::default()
        },
    )
    .unwrap();
    assert_eq!(two.replicas, 2);
    assert_eq!(two.kv_needed_bytes_per_gpu * 2, one.kv_needed_bytes_per_gpu);
    assert_eq!(two.max_concurrency, 2 * one.max_concurrency);
    let e = fit(
        &m,
        &FitInput {
            context: 8192,
            gpus: 3,
            par: Parallel { tp: 2, pp: 1 },
            ..FitInput::default()
        },
    )
    .unwrap_err();
    assert!(e.contains("--gpus 3"), "{e}");
}
