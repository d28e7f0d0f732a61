//! The OpenAI-compatible API as `diagnose` uses it: `GET /v1/models`, `POST
//! /v1/completions`, and `GET /metrics` when the server offers it. Every
//! call has a timeout; every failure is one line.

use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub struct Server {
    base: String,
    agent: ureq::Agent,
}

/// The server's model, from `/v1/models`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ModelInfo {
    pub id: String,
    /// `max_model_len` (vLLM, SGLang), when offered.
    pub max_model_len: Option<u64>,
}

/// How prompts and output lengths are sent: the first accepted of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptForm {
    /// Token ids with `min_tokens` and `ignore_eos`: exact lengths.
    TokenIds,
    /// Text with `min_tokens` and `ignore_eos`: the output length is exact.
    TextForced,
    /// Text and `max_tokens` only: lengths as they come (`usage` tells).
    Text,
}

impl PromptForm {
    pub const ORDER: [PromptForm; 3] = [
        PromptForm::TokenIds,
        PromptForm::TextForced,
        PromptForm::Text,
    ];
}

/// What one completion took.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

pub enum Failure {
    /// The server answered with this status (4xx: the form may be refused).
    Status(u16, String),
    /// No answer: refused, reset, timed out.
    Transport(String),
}

impl Failure {
    pub fn line(&self) -> String {
        match self {
            Failure::Status(code, body) => format!("the server answered {code}: {body}"),
            Failure::Transport(m) => m.clone(),
        }
    }
}

fn failure(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Status(code, r) => {
            let body = r.into_string().unwrap_or_default();
            let one: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
            Failure::Status(code, one.chars().take(200).collect())
        }
        ureq::Error::Transport(t) => Failure::Transport(t.to_string()),
    }
}

impl Server {
    pub fn new(url: &str) -> Server {
        Server {
            base: url
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .build(),
        }
    }

    fn get(&self, path: &str, timeout: Duration) -> Result<String, Failure> {
        self.agent
            .get(&format!("{}{path}", self.base))
            .timeout(timeout)
            .call()
            .map_err(failure)?
            .into_string()
            .map_err(|e| Failure::Transport(e.to_string()))
    }

    pub fn models(&self, timeout: Duration) -> Result<ModelInfo, Failure> {
        let text = self.get("/v1/models", timeout)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Failure::Transport(format!("/v1/models is not JSON: {e}")))?;
        let first = v
            .get("data")
            .and_then(|d| d.get(0))
            .ok_or_else(|| Failure::Transport("/v1/models lists no model".into()))?;
        Ok(ModelInfo {
            id: first
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            max_model_len: first.get("max_model_len").and_then(Value::as_u64),
        })
    }

    /// One completion of `prompt` tokens and `output` more, in `form`.
    pub fn complete(
        &self,
        model: &str,
        form: PromptForm,
        prompt: u64,
        output: u64,
        timeout: Duration,
    ) -> Result<Usage, Failure> {
        let mut body = json!({
            "model": model,
            "max_tokens": output,
            "temperature": 0,
            "stream": false,
        });
        match form {
            // Ids spread over the low vocabulary: valid in any tokenizer.
            PromptForm::TokenIds => {
                body["prompt"] = json!((0..prompt)
                    .map(|i| 10 + (i * 7) % 500)
                    .collect::<Vec<u64>>())
            }
            _ => body["prompt"] = json!(" hello".repeat(prompt as usize)),
        }
        if form != PromptForm::Text {
            body["min_tokens"] = json!(output);
            body["ignore_eos"] = json!(true);
        }
        let r = self
            .agent
            .post(&format!("{}/v1/completions", self.base))
            .timeout(timeout)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
            .map_err(failure)?;
        let text = r
            .into_string()
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Failure::Transport(format!("the completion is not JSON: {e}")))?;
        let u = v.get("usage");
        let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64);
        Ok(Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
        })
    }

    /// The KV cache's use as the engine reports it on `/metrics`, as a
    /// fraction: vLLM's `vllm:kv_cache_usage_perc` (`gpu_cache_usage_perc`
    /// before 0.10), SGLang's `sglang:token_usage`. None when not offered.
    pub fn kv_usage(&self, timeout: Duration) -> Option<(String, f64)> {
        let text = self.get("/metrics", timeout).ok()?;
        kv_usage_in(&text)
    }

    /// Waits until the engine says no request is running (`/metrics`), up
    /// to `until`; true when it said so, false when it offers no such figure.
    pub fn wait_no_running(&self, until: Instant) -> bool {
        loop {
            let Ok(text) = self.get("/metrics", Duration::from_secs(2)) else {
                return false;
            };
            match running_in(&text) {
                None => return false,
                Some(0.0) => return true,
                Some(_) if Instant::now() >= until => return false,
                Some(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

const KV_METRICS: [&str; 3] = [
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
];

/// The first sample of a Prometheus metric, summed over its label sets.
fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest
            .rsplit('}')
            .next()
            .unwrap_or(rest)
            .split_whitespace()
            .next();
        if let Some(v) = value.and_then(|v| v.parse::<f64>().ok()) {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

pub fn kv_usage_in(text: &str) -> Option<(String, f64)> {
    KV_METRICS
        .iter()
        .find_map(|m| Some((m.to_string(), metric(text, m)?)))
}

fn running_in(text: &str) -> Option<f64> {
    ["vllm:num_requests_running", "sglang:num_running_reqs"]
        .iter()
        .find_map(|m| metric(text, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_name_and_summed_over_labels() {
        let text = "# HELP x\nvllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.25\nvllm:kv_cache_usage_perc_other 9\nvllm:num_requests_running{a=\"b\"} 2.0\n";
        assert_eq!(
            kv_usage_in(text),
            Some(("vllm:kv_cache_usage_perc".to_string(), 0.25))
        );
        assert_eq!(running_in(text), Some(2.0));
        assert_eq!(
            kv_usage_in("sglang:token_usage 0.5\n").map(|x| x.1),
            Some(0.5)
        );
        assert_eq!(kv_usage_in("nothing 1\n"), None);
    }
}
