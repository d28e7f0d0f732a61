//! The memory plan a serving engine logged at start-up: what it believed
//! the weights, the KV cache, the CUDA graphs and the rest would take.
//! `parse_file` / `parse_str` read any log of vLLM (`vllm.rs`), SGLang
//! (`sglang.rs`) or TGI (`tgi.rs`) into one typed `EnginePlan`; a figure the
//! log does not carry stays `None` ("not logged"). A leaf: the check
//! (`check::engine_plan`) compares a plan with what the trace measured.
//!
//! Lines are matched by their published message text wherever it sits in a
//! line, so any prefix (timestamps, `(EngineCore pid=..)`, `[TP0]`), two
//! messages run together on one line, or one message per line all read the
//! same; TGI's JSON log lines are read through their `message` field.

mod number;
pub mod parse;
pub mod plan;
mod sglang;
mod tgi;
mod vllm;

pub use parse::parse_file;
pub use plan::EnginePlan;

#[cfg(test)]
mod tests;
