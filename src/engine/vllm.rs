//! vLLM's start-up memory lines, as its source writes them:
//!
//! - `vllm/v1/worker/gpu_model_runner.py`: `"Model loading took %.4f GiB and
//!   %.6f seconds"`; `"Graph capturing finished in %.0f secs, took %.2f GiB"`.
//! - `vllm/v1/worker/gpu_worker.py`: `"Available KV cache memory: %.2f GiB"`,
//!   and at DEBUG the profile (`MemoryProfilingResult.__repr__`,
//!   `vllm/utils`): `"Memory profiling takes %.2f seconds. Total non KV cache
//!   memory: X GiB; torch peak memory increase: X GiB; non-torch forward
//!   increase memory: X GiB; weights memory: X GiB."`.
//! - `vllm/v1/core/kv_cache_utils.py`: `"GPU KV cache size: %s tokens"` and
//!   `"Maximum concurrency for %s tokens per request: %.2fx"` (counts with
//!   thousands separators), one line each in earlier V1 releases, merged into
//!   one `info_once` in recent ones.
//! - `gpu_worker.py` with `--kv-cache-memory`: `"Using explicit
//!   kv_cache_memory_bytes: %s GiB"`.
//! - V0 (`vllm/worker/worker.py`): `"model weights take X GiB; non_torch_memory
//!   takes X GiB; PyTorch activation peak memory takes X GiB; the rest of the
//!   memory reserved for KV Cache is X GiB."`

use super::number::{after, count, count_after, number, size_after};
use super::plan::{Concurrency, Engine, EnginePlan};

pub fn read(line: &str, plan: &mut EnginePlan) {
    let mut hit = false;
    for key in [
        "Model loading took ",
        "weights memory: ",
        "model weights take ",
    ] {
        hit |= EnginePlan::first(&mut plan.weights_bytes, size_after(line, key));
    }
    for key in [
        "Available KV cache memory: ",
        "the rest of the memory reserved for KV Cache is ",
        // --kv-cache-memory given: the profile's figure is replaced.
        "Using explicit kv_cache_memory_bytes: ",
    ] {
        hit |= EnginePlan::first(&mut plan.kv_cache_bytes, size_after(line, key));
    }
    hit |= EnginePlan::first(
        &mut plan.kv_tokens,
        count_after(line, "GPU KV cache size: "),
    );
    if let Some(c) = concurrency(line) {
        plan.max_concurrency.get_or_insert(c);
        hit = true;
    }
    if let Some(rest) = after(line, "Graph capturing finished in ") {
        hit |= EnginePlan::first(&mut plan.graph_pool_bytes, size_after(rest, ", took "));
    }
    hit |= EnginePlan::first(
        &mut plan.torch_peak_bytes,
        size_after(line, "torch peak memory increase: ")
            .or_else(|| size_after(line, "PyTorch activation peak memory takes ")),
    );
    hit |= EnginePlan::first(
        &mut plan.non_torch_increase_bytes,
        size_after(line, "non-torch forward increase memory: "),
    );
    hit |= EnginePlan::first(
        &mut plan.non_torch_bytes,
        size_after(line, "non_torch_memory takes "),
    );
    if hit {
        plan.note(Engine::Vllm);
    }
}

fn concurrency(line: &str) -> Option<Concurrency> {
    let rest = after(line, "Maximum concurrency for ")?;
    let (context, rest) = count(rest)?;
    let rest = after(rest, "tokens per request: ")?;
    let (times, rest) = number(rest)?;
    rest.starts_with('x')
        .then_some(Concurrency { context, times })
}
