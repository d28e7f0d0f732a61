//! `kvscope check --engine-log`: engine logs written here in each engine's
//! published format (the version and source file each line copies are named
//! beside it), paired with serve_sim runs under the shim. A log whose plan is
//! what the run did gets no `engine_plan_mismatch`; a log with every figure
//! off gets one per figure, with both numbers.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

const GIB: f64 = (1u64 << 30) as f64;
/// The stand-in's CUDA context: what a program holds outside any allocator.
const CONTEXT: u64 = 640 << 20;

struct Sim {
    reports: Vec<PathBuf>,
    dir: PathBuf,
    fig: BTreeMap<String, String>,
}

impl Sim {
    fn n(&self, k: &str) -> u64 {
        self.fig
            .get(k)
            .unwrap_or_else(|| panic!("serve_sim printed no {k}: {:?}", self.fig))
            .parse()
            .unwrap()
    }
}

fn sim(name: &str, args: &[&str]) -> Sim {
    let dir = scratch(name);
    let ctx = CONTEXT.to_string();
    let r = run(
        "serve_sim",
        args,
        &[("SIMCUDA_CONTEXT_MEM", ctx.as_str())],
        true,
        &dir.join("reports"),
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    Sim {
        reports: r.reports.clone(),
        dir,
        fig: figures(&r.stdout()),
    }
}

fn gib(bytes: f64) -> f64 {
    bytes / GIB
}

/// vLLM V1's start-up lines for a run, each figure times `k`.
/// Split capacity lines: vllm/v1/core/kv_cache_utils.py of the 0.8-0.10
/// releases; the rest: vllm/v1/worker/gpu_model_runner.py ("Model loading
/// took", "Graph capturing finished"), vllm/v1/worker/gpu_worker.py
/// ("Available KV cache memory", DEBUG MemoryProfilingResult from vllm/utils).
fn vllm_v1(s: &Sim, k: f64, merged: bool) -> String {
    let w = s.n("weights_bytes") as f64 * k;
    let kv = s.n("kv_cache_bytes") as f64 * k;
    let tokens = (s.n("kv_capacity_tokens") as f64 * k) as u64;
    let peak = s.n("profile_peak_bytes") as f64 * k;
    let graphs = s.n("graph_pool_bytes") as f64 * k;
    let conc = tokens as f64 / 4096.0;
    let p = "(VllmWorker rank=0 pid=4242) INFO 05-12 10:01:02";
    let mut log = format!(
        "{p} [gpu_model_runner.py:1329] Model loading took {:.4} GiB and 4.512300 seconds\n\
         (VllmWorker rank=0 pid=4242) DEBUG 05-12 10:01:09 [gpu_worker.py:220] Memory profiling takes 5.21 seconds. Total non KV cache memory: {:.2}GiB; torch peak memory increase: {:.2}GiB; non-torch forward increase memory: 0.01GiB; weights memory: {:.2}GiB.\n\
         {p} [gpu_worker.py:227] Available KV cache memory: {:.2} GiB\n",
        gib(w),
        gib(w + peak),
        gib(peak),
        gib(w),
        gib(kv)
    );
    if merged {
        // vllm/v1/core/kv_cache_utils.py, recent main: one info_once.
        log += &format!("{p} [kv_cache_utils.py:1087] GPU KV cache size: {} tokens, Maximum concurrency for {} tokens per request: {conc:.2}x\n", thousands(tokens), thousands(4096));
    } else {
        log += &format!(
            "{p} [kv_cache_utils.py:634] GPU KV cache size: {} tokens\n\
             {p} [kv_cache_utils.py:637] Maximum concurrency for {} tokens per request: {conc:.2}x\n",
            thousands(tokens),
            thousands(4096)
        );
    }
    log += &format!(
        "{p} [gpu_model_runner.py:1686] Graph capturing finished in 22 secs, took {:.2} GiB\n",
        gib(graphs)
    );
    log
}

/// vLLM V0's profile summary (vllm/worker/worker.py, 0.6-0.7), times `k`:
/// the one that logs all memory outside PyTorch.
fn vllm_v0(s: &Sim, k: f64) -> String {
    format!(
        "INFO 01-20 09:00:00 worker.py:266] Memory profiling takes 4.02 seconds\n\
         INFO 01-20 09:00:00 worker.py:266] the current vLLM instance can use total_gpu_memory (80.00GiB) x gpu_memory_utilization (0.90) = 72.00GiB\n\
         INFO 01-20 09:00:00 worker.py:266] model weights take {:.2}GiB; non_torch_memory takes {:.2}GiB; PyTorch activation peak memory takes {:.2}GiB; the rest of the memory reserved for KV Cache is {:.2}GiB.\n",
        gib(s.n("weights_bytes") as f64 * k),
        gib(CONTEXT as f64 * k),
        gib(s.n("profile_peak_bytes") as f64 * k),
        gib(s.n("kv_cache_bytes") as f64 * k),
    )
}

fn check(s: &Sim, name: &str, log: &str, extra: &[&str]) -> (Value, i32) {
    let path = s.dir.join(format!("{name}.log"));
    std::fs::write(&path, log).unwrap();
    let mut args = vec!["check".to_string()];
    args.extend(s.reports.iter().map(|p| p.display().to_string()));
    args.extend(
        ["--model", "llama-3.1-8b", "--json", "--engine-log"]
            .iter()
            .map(|x| x.to_string()),
    );
    args.push(path.display().to_string());
    args.extend(extra.iter().map(|x| x.to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kvscope(&a);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (json, out.status.code().unwrap())
}

fn mismatches(j: &Value) -> BTreeMap<String, Value> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "engine_plan_mismatch")
        .map(|f| {
            assert_eq!(f["severity"], "warning");
            (
                f["numbers"]["figure"].as_str().unwrap().to_string(),
                f["numbers"].clone(),
            )
        })
        .collect()
}

fn rows(j: &Value) -> BTreeMap<String, Value> {
    let tables = j["engine_plan"].as_array().expect("engine_plan table");
    assert_eq!(tables.len(), 1, "{tables:?}");
    tables[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["figure"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

fn vllm_run(name: &str) -> Sim {
    sim(
        name,
        &[
            "--graph-pool",
            "512MiB",
            "--max-model-len",
            "4096",
            "--requests",
            "4",
        ],
    )
}

#[test]
fn vllm_plan_that_held_gets_no_mismatch_and_every_figure_is_in_the_table() {
    let s = vllm_run("vllm-ok");
    for (name, log) in [
        ("split", vllm_v1(&s, 1.0, false)),
        ("merged", vllm_v1(&s, 1.0, true)),
        ("v0", vllm_v0(&s, 1.0)),
    ] {
        let (j, code) = check(&s, name, &log, &[]);
        assert_eq!(
            mismatches(&j),
            BTreeMap::new(),
            "{name}: {}",
            j["engine_plan"]
        );
        assert_eq!(code, 0);
        let rows = rows(&j);
        for (figure, row) in &rows {
            let status = row["status"].as_str().unwrap();
            assert!(
                ["ok", "not logged", "not measured"].contains(&status),
                "{name} {figure}: {row}"
            );
        }
        assert_eq!(rows["kv_cache_bytes"]["status"], "ok", "{name}");
        assert_eq!(rows["weights"]["status"], "ok", "{name}");
        if name == "v0" {
            assert_eq!(rows["kv_cache_tokens"]["status"], "not logged");
            assert_eq!(rows["graph_pool"]["status"], "not logged");
            assert_eq!(rows["non_torch"]["status"], "ok");
        } else {
            assert_eq!(rows["kv_cache_tokens"]["status"], "ok", "{name}");
            assert_eq!(rows["graph_pool"]["status"], "ok", "{name}");
            assert_eq!(rows["max_concurrency"]["status"], "ok", "{name}");
            assert_eq!(rows["torch_peak"]["status"], "ok", "{name}");
            assert_eq!(rows["non_torch_increase"]["status"], "not measured");
        }
    }
}

#[test]
fn vllm_plan_with_every_figure_off_names_each_with_both_numbers() {
    let s = vllm_run("vllm-off");
    let (j, code) = check(&s, "off", &vllm_v1(&s, 1.3, false), &[]);
    let m = mismatches(&j);
    let names: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "graph_pool",
            "kv_cache_bytes",
            "kv_cache_tokens",
            "max_concurrency",
            "torch_peak",
            "weights"
        ]
    );
    assert_eq!(code, 0, "a warning under --fail-on critical");
    let w = &m["weights"];
    assert_eq!(w["unit"], "bytes");
    assert_eq!(w["measured_value"].as_u64(), Some(s.n("weights_bytes")));
    let logged = w["engine_value"].as_u64().unwrap() as f64;
    assert!((logged / s.n("weights_bytes") as f64 - 1.3).abs() < 0.001);
    assert!((w["off_fraction"].as_f64().unwrap() + 0.3 / 1.3).abs() < 0.01);
    assert_eq!(
        m["kv_cache_tokens"]["measured_value"].as_u64(),
        Some(s.n("kv_capacity_tokens"))
    );
    // V0's summary: memory outside PyTorch off too.
    let (j, _) = check(&s, "off-v0", &vllm_v0(&s, 1.3), &[]);
    assert!(
        mismatches(&j).contains_key("non_torch"),
        "{}",
        j["findings"]
    );
    // A tolerance wider than the error lets it through; --fail-on warning fails.
    let (j, _) = check(
        &s,
        "off-wide",
        &vllm_v1(&s, 1.3, false),
        &["--engine-tolerance", "0.5"],
    );
    assert!(mismatches(&j).is_empty());
    let (_, code) = check(
        &s,
        "off-fail",
        &vllm_v1(&s, 1.3, false),
        &["--fail-on", "warning"],
    );
    assert_eq!(code, 1);
}

/// SGLang's pool line, python/sglang/srt/mem_cache/memory_pool.py (0.4.x,
/// MHATokenToKVPool; GB there is 2^30 bytes).
fn sglang_log(tokens: u64, kv: u64) -> String {
    let half = kv as f64 / 2.0 / GIB;
    format!(
        "[2025-03-08 12:29:21 TP0] Load weight end. type=LlamaForCausalLM, dtype=torch.bfloat16, avail mem=60.00 GB, mem usage=16.00 GB.\n\
         [2025-03-08 12:29:21 TP0] KV Cache is allocated. #tokens: {tokens}, K size: {half:.2} GB, V size: {half:.2} GB\n\
         [2025-03-08 12:29:21 TP0] Memory pool end. avail mem=2.09 GB\n"
    )
}

#[test]
fn sglang_pool_line_against_a_token_pool_run() {
    let s = sim(
        "sglang",
        &[
            "--pattern",
            "sglang",
            "--max-model-len",
            "4096",
            "--requests",
            "4",
        ],
    );
    let (tokens, kv) = (s.n("max_total_num_tokens"), s.n("kv_cache_bytes"));
    let (j, _) = check(&s, "ok", &sglang_log(tokens, kv), &[]);
    assert!(mismatches(&j).is_empty(), "{}", j["engine_plan"]);
    let r = rows(&j);
    assert_eq!(r["kv_cache_tokens"]["status"], "ok");
    assert_eq!(r["weights"]["status"], "not logged");
    assert_eq!(j["engine_plan"][0]["engine"], "SGLang");
    let (j, _) = check(&s, "off", &sglang_log(tokens * 2, kv * 2), &[]);
    let m = mismatches(&j);
    assert!(
        m.contains_key("kv_cache_tokens") && m.contains_key("kv_cache_bytes"),
        "{m:?}"
    );
    assert_eq!(
        m["kv_cache_tokens"]["engine_value"].as_u64(),
        Some(tokens * 2)
    );
}

#[test]
fn tgi_text_and_json_lines_against_a_paged_run() {
    let s = vllm_run("tgi");
    let tokens = s.n("kv_capacity_tokens");
    // router/src/server.rs (TGI 2.x), text; router/src/main.rs (TGI 1.4), --json-output.
    let text = |n: u64| {
        format!("2024-09-03T04:40:19.370247Z  INFO text_generation_router::server: router/src/server.rs:1651: Setting max batch total tokens to {n}\n")
    };
    let json = |n: u64| {
        format!("{{\"timestamp\":\"2024-03-09T05:08:19.961136Z\",\"level\":\"INFO\",\"message\":\"Setting max batch total tokens to {n}\",\"target\":\"text_generation_router\",\"filename\":\"router/src/main.rs\",\"line_number\":328}}\n")
    };
    for (name, log) in [("text", text(tokens)), ("json", json(tokens))] {
        let (j, _) = check(&s, name, &log, &[]);
        assert!(mismatches(&j).is_empty(), "{name}");
        assert_eq!(rows(&j)["kv_cache_tokens"]["status"], "ok");
    }
    let (j, _) = check(&s, "off", &json(tokens / 2), &[]);
    assert_eq!(
        mismatches(&j).keys().collect::<Vec<_>>(),
        ["kv_cache_tokens"]
    );
}

#[test]
fn text_output_shows_the_table_with_not_logged() {
    let s = vllm_run("text");
    let log = s.dir.join("tgi.log");
    std::fs::write(&log, "Setting max batch total tokens to 1000\n").unwrap();
    let mut args: Vec<String> = vec!["check".into()];
    args.extend(s.reports.iter().map(|p| p.display().to_string()));
    args.extend([
        "--model".into(),
        "llama-3.1-8b".into(),
        "--engine-log".into(),
    ]);
    args.push(log.display().to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kvscope(&a);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TGI's plan vs the trace"), "{text}");
    assert!(text.contains("not logged"), "{text}");
    assert!(text.contains("engine_plan_mismatch"), "{text}");
}

#[test]
fn a_log_without_plan_lines_or_a_bad_tolerance_is_one_line_and_status_2() {
    let s = vllm_run("bad");
    let log = s.dir.join("empty.log");
    std::fs::write(&log, "INFO starting\n").unwrap();
    for extra in [
        vec!["--engine-log", log.to_str().unwrap()],
        vec!["--engine-log", "/nonexistent/x.log"],
        vec![
            "--engine-log",
            log.to_str().unwrap(),
            "--engine-tolerance",
            "-1",
        ],
    ] {
        let mut args = vec!["check", s.reports[0].to_str().unwrap()];
        args.extend(extra);
        let out = kvscope(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn per_request_kv_tensors_are_no_capacity_to_compare() {
    // Hugging Face's per-request K and V tensors hold requests' lengths: a
    // TGI token budget against them is "not measured", never a mismatch.
    let s = sim("hf", &["--pattern", "hf", "--requests", "4"]);
    let (j, _) = check(&s, "tgi", "Setting max batch total tokens to 123456\n", &[]);
    assert!(mismatches(&j).is_empty(), "{}", j["findings"]);
    assert_eq!(rows(&j)["kv_cache_tokens"]["status"], "not measured");
}
