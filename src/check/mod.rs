//! `kvscope check`: reports against the KV model, the reader's second stage
//! (load -> check -> render). `job` takes the reports of one job and, for
//! each process and device, gathers a `context` (the `markers`' phases, the
//! KV cache recognised by `kv_detect`, the `breakdown` of where memory goes),
//! runs the problem detectors (`detect`, one module per family of question)
//! and the diagnostic `steps`, and returns one `result::CheckResult` of typed
//! `finding`s. Nothing here writes English for the user: `crate::render` does.

pub mod breakdown;
pub mod context;
pub mod detect;
pub mod engine_plan;
pub mod finding;
pub mod growth;
pub mod job;
pub mod kind;
pub mod kv_detect;
pub mod markers;
pub mod plan;
pub mod result;
pub mod runs;
pub mod steps;
#[cfg(test)]
pub mod testkit;
