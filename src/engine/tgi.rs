//! TGI's token budget, as its router writes it after warm-up
//! (`router/src/server.rs`, earlier `router/src/main.rs`):
//! `tracing::info!("Setting max batch total tokens to
//! {max_supported_batch_total_tokens}")`, in text or JSON log lines
//! (`--json-output`). The tokens the KV cache holds; TGI logs no sizes.

use super::number::count_after;
use super::plan::{Engine, EnginePlan};

pub fn read(line: &str, plan: &mut EnginePlan) {
    if EnginePlan::first(
        &mut plan.kv_tokens,
        count_after(line, "Setting max batch total tokens to "),
    ) {
        plan.note(Engine::Tgi);
    }
}
