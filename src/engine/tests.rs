//! Every parse variant, on lines written in each engine's published format
//! (the engine version and source file named beside each).

use super::parse::{parse_file, parse_str};
use super::plan::{Concurrency, Engine};
use std::path::Path;

const GIB: f64 = (1u64 << 30) as f64;

fn gib(x: f64) -> Option<u64> {
    Some((x * GIB).round() as u64)
}

/// vLLM V1 with the split capacity lines (vllm/v1/core/kv_cache_utils.py as in
/// the 0.8-0.10 releases), with the process prefix of its multiprocess engine.
const VLLM_SPLIT: &str = "\
INFO 05-12 10:01:02 [gpu_model_runner.py:1329] Model loading took 14.9888 GiB and 4.512300 seconds
(VllmWorker rank=0 pid=4242) DEBUG 05-12 10:01:09 [gpu_worker.py:220] Memory profiling takes 5.21 seconds. Total non KV cache memory: 16.54GiB; torch peak memory increase: 1.20GiB; non-torch forward increase memory: 0.15GiB; weights memory: 14.99GiB.
INFO 05-12 10:01:09 [gpu_worker.py:227] Available KV cache memory: 108.32 GiB
INFO 05-12 10:01:09 [kv_cache_utils.py:634] GPU KV cache size: 887,360 tokens
INFO 05-12 10:01:09 [kv_cache_utils.py:637] Maximum concurrency for 8,192 tokens per request: 108.32x
INFO 05-12 10:01:31 [gpu_model_runner.py:1686] Graph capturing finished in 22 secs, took 0.53 GiB
";

#[test]
fn vllm_split_lines_give_every_figure() {
    let p = parse_str(VLLM_SPLIT).unwrap();
    assert_eq!(p.engine, Some(Engine::Vllm));
    assert_eq!(p.weights_bytes, gib(14.9888));
    assert_eq!(p.kv_cache_bytes, gib(108.32));
    assert_eq!(p.kv_tokens, Some(887_360));
    assert_eq!(
        p.max_concurrency,
        Some(Concurrency {
            context: 8192,
            times: 108.32
        })
    );
    assert_eq!(p.graph_pool_bytes, gib(0.53));
    assert_eq!(p.torch_peak_bytes, gib(1.20));
    assert_eq!(p.non_torch_increase_bytes, gib(0.15));
    assert_eq!(p.non_torch_bytes, None);
}

#[test]
fn vllm_merged_capacity_line() {
    // vllm/v1/core/kv_cache_utils.py update_kv_cache_capacity (recent main):
    // one info_once with both counts; the "memory" wording of the newer
    // "Model loading took X GiB memory and S seconds".
    let log = "(EngineCore_DP0 pid=77) INFO 10-02 08:00:00 [gpu_model_runner.py:2602] Model loading took 15.0 GiB memory and 3.1 seconds\n\
               (EngineCore_DP0 pid=77) INFO 10-02 08:00:05 [kv_cache_utils.py:1087] GPU KV cache size: 34,952 tokens, Maximum concurrency for 8,192 tokens per request: 4.27x\n";
    let p = parse_str(log).unwrap();
    assert_eq!(p.weights_bytes, gib(15.0));
    assert_eq!(p.kv_tokens, Some(34_952));
    assert_eq!(p.max_concurrency.unwrap().context, 8192);
    assert_eq!(p.max_concurrency.unwrap().times, 4.27);
    assert_eq!(p.kv_cache_bytes, None, "not logged stays None");
    assert_eq!(p.graph_pool_bytes, None);
}

#[test]
fn vllm_explicit_kv_cache_memory() {
    // vllm/v1/worker/gpu_worker.py (recent main) with --kv-cache-memory.
    let p =
        parse_str("INFO 11-01 [gpu_worker.py:301] Using explicit kv_cache_memory_bytes: 40.0 GiB")
            .unwrap();
    assert_eq!(p.kv_cache_bytes, gib(40.0));
}

#[test]
fn two_messages_on_one_line_and_repeated_ranks() {
    // Two records run together (a log collector that lost a newline), then a
    // second rank repeating its lines: the first value of each figure stays.
    let log = "Available KV cache memory: 10.00 GiB INFO GPU KV cache size: 1,000 tokens\n\
               Available KV cache memory: 11.00 GiB\n";
    let p = parse_str(log).unwrap();
    assert_eq!(p.kv_cache_bytes, gib(10.0));
    assert_eq!(p.kv_tokens, Some(1000));
    assert_eq!(p.lines, 2);
}

#[test]
fn vllm_v0_profile_summary() {
    // vllm/worker/worker.py (V0, 0.6-0.7): determine_num_available_blocks' summary.
    let log = "INFO 01-20 09:00:00 worker.py:266] Memory profiling takes 4.02 seconds\n\
               the current vLLM instance can use total_gpu_memory (79.22GiB) x gpu_memory_utilization (0.90) = 71.29GiB\n\
               model weights take 14.99GiB; non_torch_memory takes 0.28GiB; PyTorch activation peak memory takes 1.21GiB; the rest of the memory reserved for KV Cache is 54.81GiB.\n";
    let p = parse_str(log).unwrap();
    assert_eq!(p.weights_bytes, gib(14.99));
    assert_eq!(p.non_torch_bytes, gib(0.28));
    assert_eq!(p.torch_peak_bytes, gib(1.21));
    assert_eq!(p.kv_cache_bytes, gib(54.81));
}

#[test]
fn sglang_mha_and_mla() {
    // python/sglang/srt/mem_cache/memory_pool.py (0.4.x): MHATokenToKVPool.
    let mha = "[2025-03-08 12:29:21 TP0] KV Cache is allocated. #tokens: 46611, K size: 1.42 GB, V size: 1.42 GB\n\
               [2025-03-08 12:29:21 TP1] KV Cache is allocated. #tokens: 46611, K size: 1.42 GB, V size: 1.42 GB\n";
    let p = parse_str(mha).unwrap();
    assert_eq!(p.engine, Some(Engine::Sglang));
    assert_eq!(p.kv_tokens, Some(46_611));
    assert_eq!(p.kv_cache_bytes, Some(2 * gib(1.42).unwrap()));
    // Same file, MLATokenToKVPool: one latent buffer.
    let mla =
        "[2025-06-01 00:00:00 TP0] KV Cache is allocated. #tokens: 1,234,567, KV size: 40.50 GB";
    let p = parse_str(mla).unwrap();
    assert_eq!(p.kv_tokens, Some(1_234_567));
    assert_eq!(p.kv_cache_bytes, gib(40.5));
    assert_eq!(p.weights_bytes, None);
}

#[test]
fn tgi_text_and_json() {
    // router/src/server.rs (TGI 2.x): tracing::info! in text ...
    let text = "2024-09-03T04:40:19.370247Z  INFO text_generation_router::server: router/src/server.rs:1651: Setting max batch total tokens to 19056";
    let p = parse_str(text).unwrap();
    assert_eq!((p.engine, p.kv_tokens), (Some(Engine::Tgi), Some(19_056)));
    // ... and with --json-output (router/src/main.rs in TGI 1.4).
    let json = r#"{"timestamp":"2024-03-09T05:08:19.961136Z","level":"INFO","message":"Setting max batch total tokens to 133696","target":"text_generation_router","filename":"router/src/main.rs","line_number":328}"#;
    assert_eq!(parse_str(json).unwrap().kv_tokens, Some(133_696));
    let nested = r#"{"timestamp":"t","level":"INFO","fields":{"message":"Setting max batch total tokens to 7"}}"#;
    assert_eq!(parse_str(nested).unwrap().kv_tokens, Some(7));
}

#[test]
fn a_log_without_plan_lines_is_refused_in_one_line() {
    let e = parse_str("hello\nINFO started\n").unwrap_err();
    assert!(!e.contains('\n') && e.contains("no memory line"), "{e}");
    let e = parse_file(Path::new("/nonexistent/engine.log")).unwrap_err();
    assert!(e.starts_with("engine log /nonexistent/engine.log"), "{e}");
    // Damaged numbers are no figure at all.
    assert!(parse_str("Available KV cache memory: x GiB").is_err());
    assert!(parse_str("GPU KV cache size: ,,, tokens").is_err());
}
