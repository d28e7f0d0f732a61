//! SGLang's KV pool line, as `python/sglang/srt/mem_cache/memory_pool.py`
//! writes it when the pool is made: `f"KV Cache is allocated. #tokens:
//! {size}, K size: {k_size / GB:.2f} GB, V size: {v_size / GB:.2f} GB"`
//! (MHA), `f"KV Cache is allocated. #tokens: {size}, KV size: {kv_size /
//! GB:.2f} GB"` (MLA), with `GB = 1024 * 1024 * 1024` in that file.

use super::number::{after, count, size_after};
use super::plan::{Engine, EnginePlan};

pub fn read(line: &str, plan: &mut EnginePlan) {
    let Some(rest) = after(line, "KV Cache is allocated. #tokens: ") else {
        return;
    };
    let Some((tokens, rest)) = count(rest) else {
        return;
    };
    let bytes = match (size_after(rest, "K size: "), size_after(rest, "V size: ")) {
        (Some(k), Some(v)) => Some(k + v),
        _ => size_after(rest, "KV size: "),
    };
    EnginePlan::first(&mut plan.kv_tokens, Some(tokens));
    EnginePlan::first(&mut plan.kv_cache_bytes, bytes);
    plan.note(Engine::Sglang);
}
