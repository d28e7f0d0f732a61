//! What `diagnose` did, as measured: the `diagnose` section of its
//! `kvscope.check.v1` JSON, and the lines of its text header. Times are
//! milliseconds since the command started.

use super::http::{ModelInfo, PromptForm};
use serde::Serialize;

/// One request sent.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    /// The id in its markers (`request <id> start tokens=<n>`).
    pub id: String,
    pub step: u8,
    /// Tokens asked for: prompt and output (the marker's `tokens=` is their sum).
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// What the server's `usage` said (None when it gave none).
    pub usage_prompt_tokens: Option<u64>,
    pub usage_completion_tokens: Option<u64>,
    pub start_ms: f64,
    /// None: no answer (cut short, or still running when the run stopped).
    pub end_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

/// One step's window, and what was seen in it beside the reports.
#[derive(Clone, Debug, Serialize)]
pub struct StepWindow {
    pub number: u8,
    pub name: &'static str,
    pub start_ms: f64,
    pub end_ms: f64,
    /// Requests sent and answered in the step.
    pub requests: u64,
    pub answered: u64,
    /// The engine's own KV use at its highest during the step (`/metrics`).
    pub kv_usage_metric: Option<String>,
    pub kv_usage_max: Option<f64>,
    /// The probe's own samples (a device-level probe): the highest.
    pub sampled_peak_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub url: String,
    pub model: ModelInfo,
    pub probe: String,
    /// "shim" or "device" (NVML, no shim): what the verdicts rest on.
    pub level: &'static str,
    /// At device level: what can and cannot be told there.
    pub level_note: Option<&'static str>,
    pub pids: Vec<u32>,
    pub prompt_form: Option<PromptForm>,
    pub context: u64,
    pub concurrency: u64,
    pub long_context: u64,
    pub repeat: u64,
    pub quiet_ms: u64,
    pub requests: Vec<RequestRecord>,
    pub steps: Vec<StepWindow>,
    /// Why the run ended before its last step (a server error, the time
    /// limit, Ctrl-C); None when every step ran.
    pub stopped: Option<String>,
    pub elapsed_ms: f64,
    pub reports: Vec<String>,
    pub notes: Vec<String>,
}

impl Record {
    /// The header of the text output: what was sent, per step.
    pub fn text(&self) -> String {
        let mut s = format!(
            "kvscope diagnose {}: model {}{}, watched through {}\n",
            self.url,
            if self.model.id.is_empty() {
                "?"
            } else {
                &self.model.id
            },
            self.model
                .max_model_len
                .map(|n| format!(" (max_model_len {n})"))
                .unwrap_or_default(),
            self.probe
        );
        if let Some(n) = self.level_note {
            s += &format!("  verdicts at {n}\n");
        }
        if let Some(f) = self.prompt_form {
            s += &format!(
                "  prompts {}\n",
                match f {
                    PromptForm::TokenIds => "as token ids, output length forced: exact lengths",
                    PromptForm::TextForced => "as text, output length forced: lengths from usage",
                    PromptForm::Text => "as text, output length as it came: lengths from usage",
                }
            );
        }
        for w in &self.steps {
            let reqs: Vec<&RequestRecord> = self
                .requests
                .iter()
                .filter(|r| r.step == w.number)
                .collect();
            s += &format!(
                "  step {} {:<34} {:>6.1} s",
                w.number,
                w.name,
                (w.end_ms - w.start_ms) / 1000.0
            );
            if !reqs.is_empty() {
                let tokens: Vec<u64> = reqs.iter().map(|r| tokens(r)).collect();
                let lat: Vec<f64> = reqs.iter().filter_map(|r| r.latency_ms).collect();
                s += &format!(
                    "  {}/{} answered, {} tokens each{}",
                    w.answered,
                    w.requests,
                    spread(&tokens),
                    if lat.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ", latency {:.2}-{:.2} s",
                            lat.iter().copied().fold(f64::MAX, f64::min) / 1000.0,
                            lat.iter().copied().fold(0.0, f64::max) / 1000.0
                        )
                    }
                );
            }
            if let (Some(m), Some(v)) = (&w.kv_usage_metric, w.kv_usage_max) {
                s += &format!("; {m} at most {:.1}%", v * 100.0);
            }
            s += "\n";
        }
        if let Some(why) = &self.stopped {
            s += &format!("  stopped early: {why} (exit status at least 1, 130 after Ctrl-C or SIGTERM: the findings below are of what was measured)\n");
        }
        for n in &self.notes {
            s += &format!("  note: {n}\n");
        }
        s
    }
}

/// A request's tokens: from `usage` when given, else as asked.
pub fn tokens(r: &RequestRecord) -> u64 {
    match (r.usage_prompt_tokens, r.usage_completion_tokens) {
        (Some(p), Some(c)) => p + c,
        _ => r.prompt_tokens + r.output_tokens,
    }
}

fn spread(v: &[u64]) -> String {
    let lo = v.iter().min().copied().unwrap_or(0);
    let hi = v.iter().max().copied().unwrap_or(0);
    if lo == hi {
        crate::units::count(lo)
    } else {
        format!("{}-{}", crate::units::count(lo), crate::units::count(hi))
    }
}
