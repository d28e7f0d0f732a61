//! `kvscope diagnose` against a stand-in OpenAI-compatible server
//! (tests/support/openai_stub.py: Python's standard library, allocating
//! through the stand-in CUDA with ctypes) run under the shim on loopback:
//! the three KV patterns healthy, each planted fault found under its name.
//! Needs python3; skipped without it unless KVSCOPE_REQUIRE_PYTHON=1 (as in
//! CI). The ways a server or a command line can be wrong:
//! tests/diagnose_failures.rs.

mod common;
#[path = "support/diagnose_kit.rs"]
mod kit;
use common::python;
use kit::*;
use serde_json::Value;

fn healthy(pattern: &str, extra: &[&str]) {
    if !python() {
        return;
    }
    let dir = setup(&format!("healthy-{pattern}"));
    let mut args = vec!["--pattern", pattern];
    args.extend(extra);
    let stub = start(&dir, true, &args, &[]);
    let d = diagnose(&stub, &["--json"]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
    let v = d.json();
    assert_eq!(v["schema"], "kvscope.check.v1");
    assert_eq!(v["critical"], 0, "{:?}", names(&v));
    let st = steps(&v);
    assert_eq!(st.len(), 4);
    for (status, detail) in &st {
        assert_eq!(status, "ok", "{st:?}\n{detail}");
    }
    if pattern != "hf" {
        // The busiest moment's requests, not the mean of all (the long one included).
        assert!(
            st[2]
                .1
                .starts_with("4 concurrent x 256 tokens = 1,024 tokens"),
            "{}",
            st[2].1
        );
    }
    let diag = &v["diagnose"];
    assert_eq!(diag["pids"][0].as_u64(), Some(stub.child.id() as u64));
    assert!(diag["stopped"].is_null());
    let reqs = diag["requests"].as_array().unwrap();
    // 3 repeated, 4 concurrent, 1 long.
    assert_eq!(reqs.len(), 8);
    for (i, r) in reqs.iter().enumerate() {
        let want = if i < 7 { 256 } else { 2048 };
        let tokens = r["usage_prompt_tokens"].as_u64().unwrap()
            + r["usage_completion_tokens"].as_u64().unwrap();
        assert_eq!(tokens, want, "{r}");
        assert!(r["latency_ms"].as_f64().unwrap() > 0.0);
    }
    let windows = diag["steps"].as_array().unwrap();
    assert_eq!(windows.len(), 4);
    assert_eq!(windows[2]["requests"], 4);
    assert_eq!(windows[2]["answered"], 4);
    // The model came from the server's id (its directory): checked against it.
    assert!(v["model"].is_string(), "{}", v["model"]);
    assert!(d.stderr.is_empty(), "{}", d.stderr);
}

#[test]
fn a_healthy_paged_server_passes_all_four_steps() {
    healthy("paged", &[]);
}

#[test]
fn a_healthy_token_pool_server_passes_all_four_steps() {
    healthy("pool", &[]);
}

#[test]
fn a_healthy_per_request_server_behind_a_caching_allocator_passes_all_four_steps() {
    healthy("hf", &[]);
}

/// A planted fault: diagnose finds it under `name`, at `severity`.
fn fault(
    test: &str,
    args: &[&str],
    env: &[(&str, &str)],
    extra: &[&str],
    severity: &str,
    name: &str,
) -> Value {
    let dir = setup(test);
    let stub = start(&dir, true, args, env);
    let mut all = vec!["--json"];
    all.extend(extra);
    let d = diagnose(&stub, &all);
    let v = d.json();
    let found = names(&v);
    assert!(
        found.contains(&format!("{severity} {name}")),
        "want {severity} {name}, have {found:?}\n{}",
        d.stderr
    );
    let want = if severity == "critical" { 1 } else { 0 };
    assert_eq!(d.code, want, "{found:?}\n{}", d.stderr);
    v
}

#[test]
fn a_leak_per_request_is_found() {
    if !python() {
        return;
    }
    // 8 MiB kept after every request, in the paged and the per-request patterns.
    let v = fault(
        "leak-paged",
        &["--pattern", "paged", "--leak", "8388608"],
        &[],
        &[],
        "critical",
        "leak_per_request",
    );
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "leak_per_request")
        .unwrap();
    assert_eq!(
        f["numbers"]["bytes_per_request"].as_u64(),
        Some(8 << 20),
        "{f}"
    );
    fault(
        "leak-hf",
        &["--pattern", "hf", "--leak", "8388608"],
        &[],
        &[],
        "critical",
        "leak_per_request",
    );
}

#[test]
fn unbounded_growth_is_found() {
    if !python() {
        return;
    }
    // 64 KiB kept per decoded token: many allocations per request.
    fault(
        "unbounded",
        &["--pattern", "paged", "--unbounded", "65536"],
        &[],
        &[],
        "critical",
        "unbounded_growth",
    );
}

#[test]
fn a_long_context_that_runs_out_of_memory_is_found() {
    if !python() {
        return;
    }
    // 16,384 tokens need 256 MiB of KV; the device has 640 MiB, 256 of them the context's.
    let env = [
        ("SIMCUDA_DEVICE_MEM", "640MiB"),
        ("SIMCUDA_CONTEXT_MEM", "256MiB"),
    ];
    let v = fault(
        "long-oom",
        &["--pattern", "hf"],
        &env,
        &["--long-context", "16384"],
        "critical",
        "long_context_oom",
    );
    let stopped = v["diagnose"]["stopped"].as_str().unwrap();
    assert!(
        stopped.contains("500") && stopped.contains("out of memory"),
        "{stopped}"
    );
}

#[test]
fn fragmentation_and_a_second_copy_of_the_weights_are_found() {
    if !python() {
        return;
    }
    fault(
        "frag",
        &["--pattern", "paged", "--fragment"],
        &[],
        &[],
        "warning",
        "fragmentation",
    );
    fault(
        "twice",
        &["--pattern", "paged", "--double-weights"],
        &[],
        &[],
        "critical",
        "baseline_too_high",
    );
}

#[test]
fn a_server_that_refuses_token_ids_gets_text_prompts() {
    if !python() {
        return;
    }
    let dir = setup("text-only");
    let stub = start(&dir, true, &["--pattern", "pool", "--no-token-ids"], &[]);
    let d = diagnose(&stub, &["--json"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    let v = d.json();
    assert_eq!(v["diagnose"]["prompt_form"], "text_forced");
    assert!(v["diagnose"]["steps"][2]["kv_usage_metric"] == "sglang:token_usage");
}

/// A server diagnosed twice keeps the first run's markers on its timeline
/// (its `serve`, its requests d0 to d7): the second run is judged on its
/// own requests alone. It was judged on both: step 3 on the first run's
/// 4 x 1,024 tokens (a PROBLEM, the whole cache) when it sent 4 x 256, and
/// every finding about a request once per run.
#[test]
fn a_second_run_against_the_same_server_is_judged_on_its_own_requests() {
    if !python() {
        return;
    }
    let dir = setup("second-run");
    let stub = start(&dir, true, &["--pattern", "paged"], &[]);
    let url = format!("http://127.0.0.1:{}", stub.port);
    let first = run_diagnose(
        &dir,
        &[
            "diagnose",
            "--url",
            &url,
            "--context",
            "1024",
            "--long-context",
            "2048",
            "--quiet-ms",
            "300",
            "--timeout",
            "60",
            "--json",
        ],
    );
    assert!(
        first.stdout.contains("kvscope.check.v1"),
        "{}",
        first.stderr
    );
    let d = diagnose(&stub, &["--json"]);
    let v = d.json();
    let st = steps(&v);
    for (status, detail) in &st {
        assert_eq!(status, "ok", "{st:?}\n{detail}");
    }
    assert!(
        st[2]
            .1
            .starts_with("4 concurrent x 256 tokens = 1,024 tokens"),
        "{}",
        st[2].1
    );
    let notes = v["diagnose"]["notes"].to_string();
    assert!(notes.contains("diagnosed before"), "{notes}");
    let found = names(&v);
    let spikes = found
        .iter()
        .filter(|n| n.ends_with(" context_spike"))
        .count();
    assert!(spikes <= 1, "{found:?}");
    assert_eq!(d.code, 0, "{found:?}\n{}", d.stderr);
}
