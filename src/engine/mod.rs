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
mod sglang;
mod tgi;
mod vllm;

use std::path::Path;

/// Which engine wrote the lines the plan came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Vllm,
    Sglang,
    Tgi,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Vllm => "vLLM",
            Engine::Sglang => "SGLang",
            Engine::Tgi => "TGI",
        }
    }
}

/// vLLM's "Maximum concurrency for L tokens per request: Yx".
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Concurrency {
    /// Tokens per request (the model length it was computed for).
    pub context: u64,
    /// Requests of that length the KV cache holds at once.
    pub times: f64,
}

/// One engine's plan, each figure as logged (`None`: not logged).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnginePlan {
    pub engine: Option<Engine>,
    pub weights_bytes: Option<u64>,
    pub kv_cache_bytes: Option<u64>,
    pub kv_tokens: Option<u64>,
    pub max_concurrency: Option<Concurrency>,
    /// Memory the CUDA graphs took (vLLM: "Graph capturing ... took").
    pub graph_pool_bytes: Option<u64>,
    /// Memory outside PyTorch's allocator (vLLM V0 "non_torch_memory takes").
    pub non_torch_bytes: Option<u64>,
    /// Non-torch memory that the profile's forward pass added (vLLM V1
    /// DEBUG "non-torch forward increase memory"): not the whole of it.
    pub non_torch_increase_bytes: Option<u64>,
    /// The activation peak of the profile run (vLLM "torch peak memory increase").
    pub torch_peak_bytes: Option<u64>,
    /// How many log lines said something the plan took.
    pub lines: usize,
}

impl EnginePlan {
    /// Keeps the first value of each figure: with several ranks in one log,
    /// each repeats its lines, and the first is rank 0's.
    fn first(slot: &mut Option<u64>, v: Option<u64>) -> bool {
        match (slot.is_none(), v) {
            (true, Some(v)) => {
                *slot = Some(v);
                true
            }
            (_, v) => v.is_some(),
        }
    }

    fn note(&mut self, engine: Engine) {
        self.engine.get_or_insert(engine);
        self.lines += 1;
    }
}

/// The message of a line: TGI's JSON lines (`{"message": ...}` or tracing's
/// `{"fields": {"message": ...}}`) by their message, any other line whole.
fn message(line: &str) -> std::borrow::Cow<'_, str> {
    let t = line.trim_start();
    if t.starts_with('{') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(t) {
            let m = v
                .get("message")
                .or_else(|| v.get("fields").and_then(|f| f.get("message")));
            if let Some(s) = m.and_then(|m| m.as_str()) {
                return std::borrow::Cow::Owned(s.to_string());
            }
        }
    }
    std::borrow::Cow::Borrowed(line)
}

/// Reads a whole log; an error when no line of any engine's memory plan is in it.
pub fn parse_str(text: &str) -> Result<EnginePlan, String> {
    let mut plan = EnginePlan::default();
    for line in text.lines() {
        let m = message(line);
        vllm::read(&m, &mut plan);
        sglang::read(&m, &mut plan);
        tgi::read(&m, &mut plan);
    }
    if plan.lines == 0 {
        return Err("no memory line of vLLM, SGLang or TGI in it (vLLM: \"Available KV cache memory\", \"GPU KV cache size\"; SGLang: \"KV Cache is allocated\"; TGI: \"Setting max batch total tokens\")".into());
    }
    Ok(plan)
}

/// The largest log read: start-up lines come first, and a week of serving
/// logs is no plan.
const MAX_LOG: u64 = 256 << 20;

/// Reads an engine's log file (the start-up lines are enough).
pub fn parse_file(path: &Path) -> Result<EnginePlan, String> {
    let what = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("engine log {what}: {e}"))?;
    if meta.len() > MAX_LOG {
        return Err(format!(
            "engine log {what}: {} bytes, more than the {} read (give the start-up part)",
            meta.len(),
            MAX_LOG
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("engine log {what}: {e}"))?;
    parse_str(&String::from_utf8_lossy(&bytes)).map_err(|e| format!("engine log {what}: {e}"))
}

#[cfg(test)]
mod tests;
