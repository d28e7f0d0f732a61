//! The KV model: what a served LLM costs in GPU memory, from its config.json.
//! `model` reads a config, `cache` does the KV arithmetic, `params` the
//! weights, `fit` the budget and the will-it-fit answer.

pub mod arch;
pub mod cache;
mod classes;
mod defaults;
pub mod dtype;
mod ffn;
pub mod fit;
mod hub;
mod json;
mod layout;
pub mod model;
pub mod params;
mod quant;
pub mod source;

#[cfg(test)]
mod tests;

pub use cache::Parallel;
pub use dtype::Dtype;
pub use model::Model;
