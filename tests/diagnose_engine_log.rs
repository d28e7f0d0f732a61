//! `kvscope diagnose --engine-log`: the stand-in OpenAI server
//! (tests/support/openai_stub.py, paged: 64 MiB of KV, 16 KiB per token =
//! 4,096 tokens) under the shim, with a vLLM V1 start-up log written here
//! in vLLM's format. A plan that is what the server did gets no
//! `engine_plan_mismatch`; one whose figures are off gets one per figure.
//! Needs python3 (skipped without it unless KVSCOPE_REQUIRE_PYTHON=1).

mod common;
#[path = "support/diagnose_kit.rs"]
mod kit;
use common::{python, thousands};
use kit::*;
use serde_json::Value;
use std::collections::BTreeMap;

const GIB: f64 = (1u64 << 30) as f64;
const KV_BYTES: u64 = 64 << 20;
const KV_TOKENS: u64 = 4096;

/// vLLM V1's start-up lines, each figure times `k`. "Model loading took":
/// vllm/v1/worker/gpu_model_runner.py; "Available KV cache memory":
/// vllm/v1/worker/gpu_worker.py; "GPU KV cache size" with "Maximum
/// concurrency" merged into one line: vllm/v1/core/kv_cache_utils.py (0.10).
fn vllm_log(weights: u64, k: f64) -> String {
    let p = "(EngineCore_0 pid=4242) INFO 08-02 10:01:02";
    let tokens = (KV_TOKENS as f64 * k) as u64;
    format!(
        "{p} [gpu_model_runner.py:1892] Model loading took {:.4} GiB and 1.2 seconds\n\
         {p} [gpu_worker.py:255] Available KV cache memory: {:.4} GiB\n\
         {p} [kv_cache_utils.py:833] GPU KV cache size: {} tokens, Maximum concurrency for 2,048 tokens per request: {:.2}x\n",
        weights as f64 * k / GIB,
        KV_BYTES as f64 * k / GIB,
        thousands(tokens),
        tokens as f64 / 2048.0
    )
}

/// Figure name -> its row in the JSON's plan table.
fn rows(v: &Value) -> BTreeMap<String, Value> {
    v["engine_plan"][0]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no engine_plan table: {v}"))
        .iter()
        .map(|r| (r["figure"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

fn mismatched(v: &Value) -> Vec<String> {
    let mut m: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "engine_plan_mismatch")
        .map(|f| f["numbers"]["figure"].as_str().unwrap_or("?").to_string())
        .collect();
    m.sort();
    m
}

#[test]
fn diagnose_compares_a_vllm_log_with_what_the_server_did() {
    if !python() {
        return;
    }
    let dir = setup("engine-log");
    let w = weights(&dir);
    let stub = start(&dir, true, &["--pattern", "paged"], &[]);
    let ok = dir.join("ok.log");
    let off = dir.join("off.log");
    std::fs::write(&ok, vllm_log(w, 1.0)).unwrap();
    std::fs::write(&off, vllm_log(w, 2.0)).unwrap();

    let d = diagnose(&stub, &["--json", "--engine-log", ok.to_str().unwrap()]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    let v = d.json();
    assert!(mismatched(&v).is_empty(), "{}", v["engine_plan"]);
    let r = rows(&v);
    assert_eq!(r["kv_cache_tokens"]["status"], "ok", "{r:?}");
    assert_eq!(r["kv_cache_bytes"]["status"], "ok", "{r:?}");
    assert_eq!(r["weights"]["status"], "ok", "{r:?}");
    assert_eq!(v["diagnose"]["steps"].as_array().unwrap().len(), 4);

    // Twice every figure: each off by 100 %, named with both numbers.
    let d = diagnose(
        &stub,
        &[
            "--json",
            "--engine-log",
            off.to_str().unwrap(),
            "--engine-tolerance",
            "0.2",
        ],
    );
    let v = d.json();
    let m = mismatched(&v);
    for want in ["kv_cache_bytes", "kv_cache_tokens", "weights"] {
        assert!(m.contains(&want.to_string()), "{want} not in {m:?}");
    }
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["name"] == "engine_plan_mismatch" && f["numbers"]["figure"] == "kv_cache_tokens"
        })
        .unwrap();
    assert_eq!(f["severity"], "warning");
    assert_eq!(
        f["numbers"]["engine_value"].as_u64(),
        Some(2 * KV_TOKENS),
        "{f}"
    );
    assert_eq!(
        f["numbers"]["measured_value"].as_u64(),
        Some(KV_TOKENS),
        "{f}"
    );
    // A warning: below --fail-on critical.
    assert_eq!(d.code, 0, "{}", d.stderr);

    // A log with no plan line is refused in one line before the server is asked.
    let empty = dir.join("empty.log");
    std::fs::write(&empty, "nothing here\n").unwrap();
    let d = diagnose(&stub, &["--engine-log", empty.to_str().unwrap()]);
    assert_eq!(d.code, 2, "{}", d.stderr);
    assert_eq!(d.stderr.trim().lines().count(), 1, "{}", d.stderr);
}
