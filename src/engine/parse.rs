//! Reading a log: each line's message through every engine's reader.

use super::plan::EnginePlan;
use super::{sglang, tgi, vllm};
use std::path::Path;

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
