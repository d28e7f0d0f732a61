//! `kvscope check` on serve_sim runs under the shim: a clean run gets nothing
//! above info; each planted fault is found under its name, with its numbers,
//! and nothing else is flagged.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

struct Checked {
    json: Value,
    code: i32,
    sim: BTreeMap<String, String>,
}

impl Checked {
    fn names(&self, at_least: &str) -> Vec<String> {
        let order = ["info", "warning", "critical"];
        let min = order.iter().position(|s| *s == at_least).unwrap();
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                order
                    .iter()
                    .position(|s| *s == f["severity"].as_str().unwrap())
                    .unwrap()
                    >= min
            })
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    }
    fn finding(&self, name: &str) -> &Value {
        self.json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {}", self.json["findings"]))
    }
    fn sim(&self, key: &str) -> u64 {
        self.sim[key].parse().unwrap()
    }
}

/// serve_sim under the shim, then `kvscope check --json` of what it wrote.
fn checked(name: &str, env: &[(&str, &str)], args: &[&str], extra: &[&str]) -> Checked {
    let dir = scratch(name);
    let r = run("serve_sim", args, env, true, &dir);
    let mut cmd = Command::new(kvscope_bin());
    cmd.arg("check")
        .args(&r.reports)
        .args(["--model", "llama-3.1-8b", "--json"])
        .args(extra);
    let out = cmd.output().unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    Checked {
        json,
        code: out.status.code().unwrap(),
        sim: figures(&r.stdout()),
    }
}

#[test]
fn clean_runs_get_nothing_above_info() {
    for (name, args) in [
        ("clean-vllm", vec![]),
        ("clean-hf", vec!["--pattern", "hf"]),
        ("clean-sglang", vec!["--pattern", "sglang"]),
    ] {
        let c = checked(name, &[], &args, &[]);
        assert_eq!(
            c.names("warning"),
            Vec::<String>::new(),
            "{name}: {}",
            c.json["findings"]
        );
        assert_eq!(c.code, 0);
    }
}

#[test]
fn kv_capacity_derived_from_the_allocations_equals_the_simulators() {
    let c = checked("capacity-vllm", &[], &[], &[]);
    assert_eq!(
        c.finding("kv_cache")["numbers"]["capacity_tokens"],
        c.sim("kv_capacity_tokens")
    );
    let c = checked("capacity-sglang", &[], &["--pattern", "sglang"], &[]);
    assert_eq!(
        c.finding("kv_cache")["numbers"]["capacity_tokens"],
        c.sim("max_total_num_tokens")
    );
}

#[test]
fn a_leak_per_request_is_found_with_its_size() {
    let c = checked("leak", &[], &["--leak", "64MiB"], &[]);
    assert_eq!(c.names("warning"), ["leak_per_request"]);
    let f = c.finding("leak_per_request");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["numbers"]["bytes_per_request"], 64 << 20);
    assert_eq!(f["numbers"]["requests"], 8);
    assert_eq!(f["numbers"]["growth_bytes"], c.sim("leaked_bytes"));
    assert_eq!(c.code, 1);
}

#[test]
fn a_second_copy_of_the_weights_is_found() {
    let c = checked("double", &[], &["--double-weights"], &[]);
    assert_eq!(c.names("warning"), ["baseline_too_high"]);
    let f = c.finding("baseline_too_high");
    assert_eq!(f["numbers"]["weights_bytes"], c.sim("weights_bytes"));
    // llama-3.1-8b in bf16: 8,030,261,248 parameters x 2 bytes.
    assert_eq!(f["numbers"]["expected_weights_bytes"], 2 * 8_030_261_248u64);
}

#[test]
fn a_long_context_beyond_the_budget_is_found() {
    let c = checked(
        "long",
        &[("SIMCUDA_DEVICE_MEM", "40GiB")],
        &["--pattern", "hf", "--long-context", "200000"],
        &[],
    );
    assert_eq!(c.names("warning"), ["long_context_oom"]);
    let f = c.finding("long_context_oom");
    assert_eq!(f["numbers"]["in_flight_requests"], 1);
    assert_eq!(f["numbers"]["longest_request_tokens"], 200_000);
    // 200,000 tokens (a whole number of 16-token blocks) x 128 KiB.
    assert_eq!(f["numbers"]["kv_needed_bytes"], 200_000u64 * 131_072);
    assert!(f["numbers"]["kv_budget_bytes"].as_u64().unwrap() < 200_000 * 131_072);
}

#[test]
fn fragmentation_is_found_when_memory_is_free_but_allocation_fails() {
    let c = checked(
        "frag",
        &[("SIMCUDA_DEVICE_MEM", "8GiB")],
        &["--pattern", "hf", "--weights", "2GiB", "--fragment"],
        &[],
    );
    // 2 GiB of weights on an 8 GiB device is not llama-3.1-8b (15 GiB):
    // model sanity says so (a warning) beside the fragmentation.
    assert_eq!(c.names("warning"), ["fragmentation", "model_mismatch"]);
    let f = c.finding("fragmentation");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["numbers"]["failed_bytes"], 64 << 20);
    // Each 32 MiB pool segment keeps a 20 MiB hole and 2 MiB of slack beside its 10 MiB block.
    let holes = c.sim("fragment_hole_bytes");
    assert_eq!(f["numbers"]["pool_held_free_bytes"], holes / 20 * 22);
}

/// The post-mortem stands alone: with only the `-oom.json` (a process killed
/// right after, no exit report), the pools are there and the fragmentation
/// is found.
#[test]
fn the_post_mortem_alone_shows_the_fragmentation() {
    // With the background thread, and without it (written on the failing thread).
    for sample_ms in ["200", "0"] {
        let dir = scratch(&format!("frag-oom-alone-{sample_ms}"));
        let r = run(
            "serve_sim",
            &["--pattern", "hf", "--weights", "2GiB", "--fragment"],
            &[
                ("SIMCUDA_DEVICE_MEM", "8GiB"),
                ("KVSCOPE_SAMPLE_MS", sample_ms),
            ],
            true,
            &dir,
        );
        let oom: Vec<_> = r
            .reports
            .iter()
            .filter(|p| p.to_string_lossy().ends_with("-oom.json"))
            .collect();
        assert_eq!(oom.len(), 1, "{:?}", r.reports);
        assert!(
            !load(oom[0])["pools"].as_array().unwrap().is_empty(),
            "{sample_ms}"
        );
        let out = Command::new(kvscope_bin())
            .arg("check")
            .arg(oom[0])
            .args(["--model", "llama-3.1-8b", "--json"])
            .output()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let names: Vec<&str> = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"fragmentation"), "{sample_ms}: {names:?}");
    }
}

#[test]
fn unbounded_growth_is_found_and_told_from_a_leak() {
    let c = checked("unbounded", &[], &["--unbounded", "1MiB"], &[]);
    assert_eq!(c.names("warning"), ["unbounded_growth"]);
    let f = c.finding("unbounded_growth");
    // 8 requests x 128 generated tokens x 1 MiB, one allocation each.
    assert_eq!(f["numbers"]["growth_bytes"], (8 * 128) << 20);
    assert_eq!(f["numbers"]["allocations"], 1024);
    assert_eq!(f["numbers"]["growth_bytes"], c.sim("unbounded_bytes"));
}

#[test]
fn an_oom_without_a_better_explanation_is_reported_as_such() {
    let c = checked("oom-at", &[], &["--oom-at", "5"], &[]);
    assert_eq!(c.names("warning"), ["out_of_memory"]);
}

#[test]
fn alerts_and_the_exit_status_follow_the_thresholds() {
    // One request of 2,000 tokens among 640s: a context spike, a warning.
    let args = ["--requests", "4", "--long-context", "2000"];
    let c = checked("spike", &[], &args, &[]);
    assert_eq!(c.names("warning"), ["context_spike"]);
    assert_eq!(c.finding("context_spike")["numbers"]["tokens"], 2000);
    assert_eq!(c.code, 0, "warnings pass by default");
    assert_eq!(
        checked("spike-fail", &[], &args, &["--fail-on", "warning"]).code,
        1
    );
    assert!(
        checked("spike-factor", &[], &args, &["--spike-factor", "4"])
            .names("warning")
            .is_empty()
    );
    // Utilisation counts a preallocated KV cache only as far as requests fill it:
    // the clean run uses about 22% of its GPU, over a 10% warning, under 50% critical.
    let c = checked(
        "util",
        &[],
        &[],
        &["--util-warn", "0.1", "--util-crit", "0.5"],
    );
    assert_eq!(c.names("warning"), ["utilization"]);
    assert_eq!(c.finding("utilization")["severity"], "warning");
}

#[test]
fn ranks_of_one_job_are_checked_together() {
    // Two processes, each one tensor-parallel rank of llama-3.1-8b at tp 2:
    // 4 KV heads and half the weights each. Rank 1 loads its weights twice.
    let dir = scratch("ranks");
    let shape = ["--kv-heads", "4", "--weights", "8GiB"];
    let r0 = run(
        "serve_sim",
        &shape,
        &[("RANK", "0"), ("WORLD_SIZE", "2")],
        true,
        &dir,
    );
    let mut twice = shape.to_vec();
    twice.push("--double-weights");
    let r1 = run(
        "serve_sim",
        &twice,
        &[("RANK", "1"), ("WORLD_SIZE", "2")],
        true,
        &dir,
    );
    assert_eq!((r0.code(), r1.code()), (0, 0));
    let out = Command::new(kvscope_bin())
        .arg("check")
        .args(&r1.reports)
        .args(["--model", "llama-3.1-8b", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] != "info")
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["process"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        names
            .iter()
            .any(|(n, p)| n == "baseline_too_high" && p.starts_with("rank 1")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|(n, p)| n == "baseline_too_high" && p.starts_with("rank 0")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|(n, _)| n == "rank_imbalance"),
        "{names:?}"
    );
    // Each rank's KV cache is recognised with the per-rank geometry (4 KV heads).
    let caps: Vec<u64> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "kv_cache")
        .map(|f| f["numbers"]["capacity_tokens"].as_u64().unwrap())
        .collect();
    assert_eq!(caps.len(), 2);
    assert!(v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("--tp 2")));
}

#[test]
fn check_rejects_bad_input_in_one_line() {
    let dir = scratch("check-bad");
    let rep = run("serve_sim", &["--requests", "1"], &[], true, &dir).reports[0].clone();
    let rep = rep.to_str().unwrap();
    for (args, needle) in [
        (vec!["check"], "required"),
        (vec!["check", "/nonexistent.json"], "No such file"),
        (
            vec!["check", rep, "--model", "nope"],
            "no such file or preset",
        ),
        (vec!["check", rep, "--util-warn", "0.95"], "--util-warn"),
        (vec!["check", rep, "--fail-on", "sometimes"], "--fail-on"),
        (
            vec!["check", rep, "--model", "llama-3.1-8b", "--tp", "3"],
            "--tp 3",
        ),
    ] {
        let out = kvscope(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Issue 12: reports of separate runs of one program (one after another,
/// from one parent) are not the ranks of one job: each run is checked at
/// the tensor-parallel size given (1 by default), never as "loaded twice".
#[test]
fn separate_runs_are_checked_side_by_side() {
    let dir = scratch("separate-runs");
    let mut reports = Vec::new();
    for _ in 0..3 {
        reports = run("serve_sim", &["--requests", "2"], &[], true, &dir).reports;
    }
    assert_eq!(reports.len(), 3, "{reports:?}");
    let check = |extra: &[&str]| {
        Command::new(kvscope_bin())
            .arg("check")
            .args(&reports)
            .args(["--model", "llama-3.1-8b"])
            .args(extra)
            .env_remove("NO_COLOR")
            .output()
            .unwrap()
    };
    let out = check(&["--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", v["findings"]);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{v}");
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["ranks"], false);
        assert_eq!(r["tp"], 1);
        assert_eq!(r["critical"], 0);
        assert_eq!(r["label"], format!("run {i}"));
    }
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["severity"] != "critical"));
    // Today's top-level fields stay: every process, every finding.
    assert_eq!(v["processes"].as_array().unwrap().len(), 3);
    let text = String::from_utf8(check(&[]).stdout).unwrap();
    assert!(text.starts_with("3 runs, checked separately:\n"), "{text}");
    assert_eq!(text.matches("\n== run ").count(), 3, "{text}");
    // Not a terminal: no colour.
    assert!(!text.contains('\x1b'), "{text}");
}

/// `--tp 1` is what it says: the ranks of a job are not re-guessed.
#[test]
fn an_explicit_tp_is_honoured() {
    let dir = scratch("tp-given");
    let mut reports = Vec::new();
    for rank in ["0", "1"] {
        reports = run(
            "serve_sim",
            &["--requests", "2"],
            &[("RANK", rank), ("WORLD_SIZE", "2")],
            true,
            &dir,
        )
        .reports;
    }
    let json = |extra: &[&str]| -> Value {
        let out = Command::new(kvscope_bin())
            .arg("check")
            .args(&reports)
            .args(["--model", "llama-3.1-8b", "--json"])
            .args(extra)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let guessed = json(&[]);
    assert_eq!(guessed["runs"].as_array().unwrap().len(), 1);
    assert_eq!(guessed["runs"][0]["ranks"], true);
    assert_eq!(guessed["runs"][0]["tp"], 2);
    let given = json(&["--tp", "1"]);
    assert_eq!(given["runs"][0]["tp"], 1, "{given}");
    assert!(given["notes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| !n.as_str().unwrap().contains("--tp 2")));
}

/// Issue 12: the wrong model, or a model too big, is "this does not look
/// like MODEL" instead of "loaded twice?" or a step 1 "ok"; without a model
/// the preallocated cache is neither weights nor a utilisation problem.
#[test]
fn a_run_that_does_not_look_like_the_model_says_so() {
    let dir = scratch("model-sanity");
    let reports = run("serve_sim", &[], &[], true, &dir).reports;
    let check = |extra: &[&str]| -> Value {
        let out = Command::new(kvscope_bin())
            .arg("check")
            .args(&reports)
            .args(["--json"])
            .args(extra)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let above_info = |v: &Value| -> Vec<String> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] != "info")
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    for model in ["qwen2.5-7b-instruct", "llama-3.1-70b"] {
        let v = check(&["--model", model]);
        assert_eq!(
            above_info(&v),
            ["model_mismatch"],
            "{model}: {}",
            v["findings"]
        );
        let step1 = &v["processes"][0]["devices"][0]["steps"][0];
        assert_ne!(step1["status"], "ok", "{model}: {step1}");
        assert_eq!(v["exit_status"], 0);
    }
    let right = check(&["--model", "llama-3.1-8b"]);
    assert!(above_info(&right).is_empty(), "{}", right["findings"]);
    let none = check(&[]);
    assert!(above_info(&none).is_empty(), "{}", none["findings"]);
    let b = &none["processes"][0]["devices"][0]["breakdown"];
    assert_eq!(
        b["kv_bytes"],
        right["processes"][0]["devices"][0]["breakdown"]["kv_bytes"]
    );
}
