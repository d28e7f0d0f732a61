//! The kvscope binary: its commands and its errors.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

fn make_report(name: &str, args: &[&str]) -> std::path::PathBuf {
    let dir = scratch(name);
    let r = run("serve_sim", args, &[], true, &dir);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    r.path("exit").to_path_buf()
}

#[test]
fn report_prints_a_summary_and_json() {
    let p = make_report("report-cmd", &["--requests", "2", "--leak", "8MiB"]);
    let out = kvscope(&["report", p.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("largest live allocations"), "{text}");
    assert!(
        text.contains("kv_cache"),
        "phases are named after markers: {text}"
    );
    let out = kvscope(&["report", "--json", p.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "kvscope.report.v1");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = scratch("bad-input");
    let not_json = dir.join("x.json");
    std::fs::write(&not_json, "{oops").unwrap();
    let other = dir.join("y.json");
    std::fs::write(&other, r#"{"schema":"something.else"}"#).unwrap();
    let future = dir.join("z.json");
    std::fs::write(&future, r#"{"schema":"kvscope.report.v9"}"#).unwrap();
    // A real report, then damaged copies of it.
    let good = make_report("bad-input-seed", &[]);
    let text = std::fs::read_to_string(&good).unwrap();
    let damaged = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let truncated = damaged("truncated.json", text[..text.len() / 2].to_string());
    let negative = damaged(
        "negative.json",
        text.replacen("\"live_bytes\":", "\"live_bytes\":-", 1),
    );
    let huge = damaged(
        "huge.json",
        text.replacen(
            "\"peak_bytes\":",
            "\"peak_bytes\":1152921504606846976,\"was\":",
            1,
        ),
    );
    let bare = damaged("bare.json", r#"{"schema":"kvscope.report.v1"}"#.into());
    let wrong_type = damaged(
        "type.json",
        text.replacen("\"devices\":[", "\"devices\":\"oops\",\"was\":[", 1),
    );
    // A file of 1 GiB (sparse: no disk is used) is refused before it is read.
    let big = dir.join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    for (args, needle) in [
        (vec!["report", "/nonexistent/report.json"], "No such file"),
        (vec!["report", not_json.to_str().unwrap()], "not JSON"),
        (vec!["report", other.to_str().unwrap()], "not supported"),
        (vec!["report", future.to_str().unwrap()], "not supported"),
        (vec!["mark", "999999999", "x"], "no process"),
        (vec!["report", truncated.to_str().unwrap()], "not JSON"),
        (
            vec!["report", negative.to_str().unwrap()],
            "malformed report",
        ),
        (
            vec!["check", huge.to_str().unwrap()],
            "beyond any real figure",
        ),
        (
            vec!["report", bare.to_str().unwrap()],
            "missing field `reason`",
        ),
        (
            vec!["diff", wrong_type.to_str().unwrap(), good.to_str().unwrap()],
            "malformed report",
        ),
        (vec!["report", big.to_str().unwrap()], "too large"),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--gpus", "0"],
            "--gpus must be at least 1",
        ),
        (
            vec!["report", good.to_str().unwrap(), "--top", "0"],
            "invalid value '0' for '--top",
        ),
    ] {
        let out = kvscope(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, not: {err}");
        assert!(
            err.starts_with("kvscope: error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn run_preloads_summarises_and_keeps_the_exit_status() {
    let dir = scratch("run-cmd");
    let sim = native("serve_sim");
    let out = Command::new(kvscope_bin())
        .args([
            "run",
            "--out",
            dir.to_str().unwrap(),
            "--",
            sim.to_str().unwrap(),
            "--requests",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exit report") && err.contains("largest live allocations"),
        "{err}"
    );
    // A long context beyond the budget: serve_sim dies of OOM with status 1.
    let out = Command::new(kvscope_bin())
        .args([
            "run",
            "--out",
            dir.to_str().unwrap(),
            "--",
            sim.to_str().unwrap(),
            "--pattern",
            "hf",
            "--long-context",
            "200000",
        ])
        .env("SIMCUDA_DEVICE_MEM", "40GiB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OUT OF MEMORY"));
}

#[test]
fn demo_shows_the_planted_leak() {
    let out = kvscope(&["demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CRITICAL leak_per_request"), "{text}");
    assert!(text.contains("64.0 MiB more per request"), "{text}");
    assert!(
        text.contains("450,912 tokens"),
        "the KV cache is recognised: {text}"
    );
}

#[test]
fn a_running_process_can_be_marked_and_dumped_from_outside() {
    let dir = scratch("external");
    let mut child = Command::new(native("serve_sim"))
        .args(["--requests", "2", "--idle-ms", "3000"])
        .env("LD_PRELOAD", shim_lib())
        .env("KVSCOPE_OUT", &dir)
        .env("KVSCOPE_SAMPLE_MS", "20")
        .env("KVSCOPE_CTL_DIR", dir.join("ctl"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id().to_string();
    let ctl = dir.join("ctl");
    let ctl_env = [("KVSCOPE_CTL_DIR", ctl.to_str().unwrap())];
    let call = |args: &[&str]| {
        let mut c = Command::new(kvscope_bin());
        c.args(args);
        for (k, v) in ctl_env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let m = call(&["mark", &pid, "checked from outside"]);
    common::assert_ok(&m);
    let d = call(&["dump", &pid, "operator request"]);
    common::assert_ok(&d);
    assert!(child.wait().unwrap().success());
    let reports: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let dump = reports
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-dump-1.json"))
        .expect("dump report");
    assert_eq!(load(dump)["reason_detail"], "operator request");
    let exit = load(
        reports
            .iter()
            .find(|p| p.to_string_lossy().ends_with("-exit.json"))
            .unwrap(),
    );
    let marks = exit["markers"].as_array().unwrap();
    let m = marks
        .iter()
        .find(|m| m["label"] == "checked from outside")
        .expect("external marker");
    assert_eq!(m["source"], "external");
    assert!(exit["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["marker"] == "checked from outside"));
    assert!(marks
        .iter()
        .any(|m| m["label"] == "serve" && m["source"] == "api"));
}

#[test]
fn fit_prints_a_verdict_and_json() {
    let out = kvscope(&[
        "fit",
        "--model",
        "llama-3.1-8b",
        "--context",
        "8192",
        "--concurrency",
        "16",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict: fits"), "{text}");
    let out = kvscope(&[
        "fit",
        "--model",
        "llama-3.1-70b",
        "--tp",
        "8",
        "--context",
        "131072",
        "--concurrency",
        "8",
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "model",
        "kv_bytes_per_token",
        "kv_bytes_per_token_per_gpu",
        "kv_bytes_per_request",
        "state_bytes_per_sequence",
        "weights_bytes",
        "weights_bytes_per_gpu",
        "available_bytes_per_gpu",
        "kv_needed_bytes_per_gpu",
        "will_fit",
        "headroom_bytes_per_gpu",
        "max_concurrency",
        "max_context",
    ] {
        assert!(!v[k].is_null(), "{k} missing");
    }
    assert_eq!(v["kv_bytes_per_token"], 327_680);
    assert_eq!(v["kv_bytes_per_token_per_gpu"], 40_960);
    let list = kvscope(&["fit", "--list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    for name in [
        "llama-2-7b",
        "llama-3.1-8b",
        "llama-3.1-70b",
        "mistral-7b-v0.1",
        "mixtral-8x7b-v0.1",
        "qwen2.5-7b-instruct",
        "deepseek-v2-lite",
    ] {
        assert!(text.contains(name), "{name} not listed");
    }
}

#[test]
fn fit_rejects_bad_input_in_one_line() {
    let dir = scratch("fit-bad");
    let not_json = dir.join("config.json");
    std::fs::write(&not_json, "{").unwrap();
    let missing = dir.join("missing.json");
    std::fs::write(
        &missing,
        r#"{"hidden_size": 64, "num_attention_heads": 4, "vocab_size": 10}"#,
    )
    .unwrap();
    let huge = dir.join("huge.json");
    std::fs::write(
        &huge,
        r#"{"hidden_size": 1e15, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}"#,
    )
    .unwrap();
    // Beyond u64: the message says the value as written (it said
    // 18446744073709551615, the cast's saturation).
    let beyond = dir.join("beyond.json");
    std::fs::write(
        &beyond,
        r#"{"hidden_size": 1e30, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}"#,
    )
    .unwrap();
    let absurd = dir.join("absurd.json");
    std::fs::write(
        &absurd,
        r#"{"hidden_size": 4294967296, "num_hidden_layers": 60000, "num_attention_heads": 1, "intermediate_size": 4294967296, "vocab_size": 10}"#,
    )
    .unwrap();
    let big = dir.join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::File::create(big.join("config.json"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    for (args, needle) in [
        (vec!["fit", "--model", "gpt-7"], "no such file or preset"),
        (
            vec!["fit", "--model", huge.to_str().unwrap()],
            "out of range",
        ),
        (
            vec!["fit", "--model", beyond.to_str().unwrap()],
            "hidden_size 1e+30 is out of range",
        ),
        (
            vec!["fit", "--model", absurd.to_str().unwrap()],
            "implausibly many",
        ),
        (vec!["fit", "--model", big.to_str().unwrap()], "too large"),
        (
            vec![
                "fit",
                "--model",
                "llama-3.1-8b",
                "--context",
                "99999999999999999999",
            ],
            "--context",
        ),
        (
            vec!["fit", "--model", not_json.to_str().unwrap()],
            "not JSON",
        ),
        (
            vec!["fit", "--model", missing.to_str().unwrap()],
            "missing num_hidden_layers",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--tp", "3"],
            "--tp 3",
        ),
        (
            vec!["fit", "--model", "qwen2.5-7b", "--tp", "7"],
            "neither way",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--pp", "64"],
            "--pp 64",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--gpu-mem", "0"],
            "--gpu-mem",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--gpu-mem", "-8GiB"],
            "not a size",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--context", "0"],
            "--context",
        ),
        // Beyond u64 in bytes: refused (the verdict saturated, "short by 8388608 TiB").
        (
            vec![
                "fit",
                "--model",
                "llama-3.1-8b",
                "--context",
                "18446744073709551615",
                "--concurrency",
                "18446744073709551615",
            ],
            "tokens in flight",
        ),
        (
            vec![
                "fit",
                "--model",
                "llama-3.1-8b",
                "--context",
                "2000000",
                "--concurrency",
                "1000000",
            ],
            "tokens in flight",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--context", "-5"],
            "--context",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--concurrency", "0"],
            "--concurrency",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--gpu-util", "1.5"],
            "--gpu-util",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--kv-dtype", "int4"],
            "--kv-dtype",
        ),
        (
            vec!["fit", "--model", "llama-3.1-8b", "--gpus", "3", "--tp", "2"],
            "--gpus 3",
        ),
        (vec!["fit"], "--model is required"),
    ] {
        let out = kvscope(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn diff_shows_what_grew() {
    let dir = scratch("diff");
    let child = Command::new(native("probe"))
        .arg("dump")
        .env("LD_PRELOAD", shim_lib())
        .env("KVSCOPE_OUT", &dir)
        .output()
        .unwrap();
    assert!(child.status.success());
    let dump = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dump-1.json"))
        .unwrap();
    let leak = make_report("diff-leak", &["--requests", "4", "--leak", "32MiB"]);
    let clean = make_report("diff-clean", &["--requests", "4"]);
    let out = kvscope(&["diff", clean.to_str().unwrap(), leak.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("+4 x 32.0 MiB cudaMalloc"), "{text}");
    assert!(text.contains("128 MiB more in all"), "{text}");
    let out = kvscope(&["diff", dump.to_str().unwrap(), dump.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no change"));
}

/// `check` of several reports of one process says which one it judged.
#[test]
fn check_of_several_reports_of_one_process_names_the_one_it_judged() {
    let r = run("probe", &["dump"], &[], true, &scratch("judged"));
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let files: Vec<String> = r
        .reports
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let text = String::from_utf8_lossy(&kvscope(&args).stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("judged from"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("-exit.json"), "{line}");
    assert!(
        line.contains(&format!("{} other report", files.len() - 1)),
        "{line}"
    );
}

/// Between two processes, what B holds less of is not called freed (nor
/// grown), and pinned host memory is on no device.
#[test]
fn diff_between_processes_says_more_and_less_and_where_host_memory_is() {
    let report = |name: &str, client: &str, args: &[&str], env: &[(&str, &str)]| {
        let r = run(client, args, env, true, &scratch(name));
        assert_eq!(r.code(), 0, "{}", r.stderr());
        r.path("exit").to_path_buf()
    };
    let more = report("diff-more", "scripted", &[], &[("SIMCUDA_DEVICES", "2")]);
    let less = report("diff-less", "threads", &["2", "100"], &[]);
    let out = kvscope(&["diff", more.to_str().unwrap(), less.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text
        .lines()
        .find(|l| l.starts_with("live allocations that differ"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        header.contains("less") && header.contains("net -"),
        "{text}"
    );
    assert!(
        !text.contains("freed") && text.contains("(none in B)"),
        "{text}"
    );
    assert!(
        text.lines()
            .filter(|l| l.contains("cudaHostAlloc") || l.contains("cudaMallocHost"))
            .all(|l| l.contains("in pinned host memory") && !l.contains("device")),
        "{text}"
    );
    assert!(text.contains("in pinned host memory"), "{text}");
}

/// What the reader writes from a report (a page, a snapshot, the demo's
/// folder) is as private as the report: 0600 files, a 0700 folder.
#[test]
fn outputs_written_from_reports_are_as_private_as_the_reports() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = scratch("private");
    let keep = dir.join("demo");
    let out = kvscope(&["demo", "--keep", keep.to_str().unwrap()]);
    common::assert_ok(&out);
    assert_eq!(mode(&keep), 0o700);
    assert_eq!(mode(&keep.join("demo.html")) & 0o077, 0);
    let report = reports_in(&keep).pop().unwrap();
    let page = dir.join("page.html");
    let pickle = dir.join("snapshot.pickle");
    let r = report.to_str().unwrap();
    assert!(kvscope(&["report", r, "--html", page.to_str().unwrap()])
        .status
        .success());
    assert!(
        kvscope(&["export", "--memory-viz", pickle.to_str().unwrap(), r])
            .status
            .success()
    );
    assert_eq!(mode(&page) & 0o077, 0, "{}", page.display());
    assert_eq!(mode(&pickle) & 0o077, 0, "{}", pickle.display());
}

/// `kvscope ... | head` ends quietly when head stops reading (no panic, no backtrace).
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    // A real report whose JSON is well over a pipe's 64 KiB buffer.
    let rep = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/h200/fragoom/kvscope-exit.json");
    assert!(
        rep.exists(),
        "the shared fixtures are missing: {}",
        rep.display()
    );
    for args in [
        vec!["report", rep.to_str().unwrap(), "--json"],
        vec![
            "check",
            rep.to_str().unwrap(),
            "--json",
            "--model",
            "llama-3.1-8b",
        ],
    ] {
        let mut child = Command::new(kvscope_bin())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 8];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The read end is closed here, as head closes it.
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}");
    }
}

/// A process whose one CUDA call failed lists its device, and the reader
/// takes its report (a failure on no listed device was read as a cut file).
#[test]
fn a_process_whose_only_call_failed_has_a_readable_report() {
    // No sampler: no timeline sample lists the device either.
    let run = run(
        "probe",
        &["fail-only"],
        &[("KVSCOPE_SAMPLE_MS", "0")],
        true,
        &scratch("fail-only"),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(!run.stdout().contains("rc=0"));
    let r = kvscope(&["report", "--json", run.path("exit").to_str().unwrap()]);
    common::assert_ok(&r);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["devices"][0]["device"], 0, "{v}");
    assert_eq!(v["failures"].as_array().unwrap().len(), 1);
}

/// `kvscope run` with a command that is not there, or cannot be run, exits
/// as a shell would (127, 126), in one line.
#[test]
fn run_exits_as_a_shell_when_the_command_cannot_start() {
    let dir = scratch("run-missing");
    let not_exec = dir.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    for (cmd, code) in [(dir.join("no-such-command"), 127), (not_exec.clone(), 126)] {
        let out = kvscope(&[
            "run",
            "--out",
            dir.join("out").to_str().unwrap(),
            "--",
            cmd.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{cmd:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("cannot run"), "{err}");
    }
}

/// Report names carry the process's start time (a container's processes are
/// often PID 1 every time); `kvscope run` shows only its own run's reports,
/// all of them marked with its run id.
#[test]
fn runs_never_share_or_overwrite_reports() {
    let dir = scratch("two-runs");
    let run_once = || {
        Command::new(kvscope_bin())
            .args(["run", "--out"])
            .arg(&dir)
            .arg("--")
            .arg(native("serve_sim"))
            .args(["--requests", "2"])
            .env_remove("LD_PRELOAD")
            .output()
            .unwrap()
    };
    let first = run_once();
    common::assert_ok(&first);
    let second = run_once();
    let stderr = String::from_utf8_lossy(&second.stderr);
    let shown: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("kvscope: ") && l.ends_with(".json"))
        .collect();
    assert_eq!(shown.len(), 1, "{stderr}");
    let reports = reports_in(&dir);
    assert_eq!(reports.len(), 2, "{reports:?}");
    let ids: Vec<String> = reports
        .iter()
        .map(|p| {
            let r = load(p);
            let start = r["process"]["start_unix_ms"].as_u64().unwrap();
            assert!(
                p.to_string_lossy().contains(&format!("-{start}-exit.json")),
                "{}",
                p.display()
            );
            r["process"]["run_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|i| i.starts_with("run-")), "{ids:?}");
}

/// Runs kvscope, killed and failed after `limit` (a read without end is a
/// failure here, not a stuck suite).
fn kvscope_within(args: &[&str], env: &[(&str, &str)], limit_s: u64) -> std::process::Output {
    let mut cmd = Command::new(kvscope_bin());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(limit_s)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("kvscope {args:?} still running after {limit_s} s: killed");
        }
    }
}

fn one_error_line(out: &std::process::Output, needle: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line, not: {err}");
    assert!(
        err.starts_with("kvscope: error: ") && err.contains(needle),
        "{what}: {err}"
    );
}

/// Devices, FIFOs and pipes claim 0 bytes: reports and configs are read by
/// the bytes actually read, a device is refused unread, a FIFO nobody
/// writes to ends at once, and a pipe that delivers a report is read.
#[test]
fn devices_and_pipes_are_read_bounded_or_refused() {
    for args in [
        vec!["report", "/dev/zero"],
        vec!["check", "/dev/zero"],
        vec!["diff", "/dev/zero", "/dev/zero"],
        vec!["fit", "--model", "/dev/zero"],
    ] {
        let out = kvscope_within(&args, &[], 10);
        one_error_line(&out, "a character device", &format!("{args:?}"));
    }
    let dir = scratch("fifo-input");
    let fifo = dir.join("idle.json");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = kvscope_within(&["report", fifo.to_str().unwrap()], &[], 10);
    one_error_line(&out, "empty", "a FIFO nobody writes to");

    // `kvscope report <(cat r.json)`: a pipe that delivers and ends.
    let rep = make_report("fifo-input-seed", &["--requests", "2"]);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' report <(cat '{}'); '{}' report <(yes)",
            kvscope_bin().display(),
            rep.display(),
            kvscope_bin().display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("largest live allocations"), "{text}\n{err}");
    // An endless pipe of something else: refused at its first byte.
    assert!(err.contains("not JSON"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}

/// `kvscope mark/dump` against a process without the shim: one line, exit
/// 2 at once, and no control directory made.
#[test]
fn mark_and_dump_refuse_a_process_without_the_shim() {
    let dir = scratch("no-shim");
    let ctl = dir.join("ctl");
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    for args in [vec!["mark", &pid, "x"], vec!["dump", &pid]] {
        let t = std::time::Instant::now();
        let out = kvscope_within(&args, &[("KVSCOPE_CTL_DIR", ctl.to_str().unwrap())], 20);
        one_error_line(
            &out,
            "does not have libkvscope.so loaded",
            &format!("{args:?}"),
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(3));
        assert!(!ctl.exists(), "{args:?} created {}", ctl.display());
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// `kvscope mark/dump` to a process with the shim loaded but not started
/// (no CUDA call yet): refused at once, not after waiting 10 s for a
/// request nobody takes, and nothing left in the control directory.
#[test]
fn mark_and_dump_refuse_a_shim_that_is_not_running() {
    let dir = scratch("shim-idle");
    let ctl = dir.join("ctl");
    let (mut sleeper, pid) = preloaded_sleeper();
    for args in [vec!["mark", &pid, "x"], vec!["dump", &pid]] {
        let t = std::time::Instant::now();
        let out = kvscope_within(&args, &[("KVSCOPE_CTL_DIR", ctl.to_str().unwrap())], 20);
        one_error_line(&out, "not running there", &format!("{args:?}"));
        assert!(t.elapsed() < std::time::Duration::from_secs(3));
        assert!(!ctl.exists(), "{args:?} created {}", ctl.display());
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// A label longer than a marker keeps is refused in one line, before any
/// process is asked (it was sent whole, printed whole, and cut to 200
/// characters by the shim).
#[test]
fn mark_refuses_a_label_longer_than_a_marker_keeps() {
    let pid = std::process::id().to_string();
    let long = "x".repeat(201);
    let out = kvscope_within(&["mark", &pid, &long], &[], 20);
    one_error_line(&out, "201 characters: a marker keeps at most 200", "mark");
}

/// `kvscope mark/dump` to a process that has exited but is not yet reaped
/// (a server killed while a parent still holds it): it says so, instead of
/// "does not have libkvscope.so loaded" (a zombie maps nothing).
#[test]
fn mark_and_dump_say_an_exited_process_has_exited() {
    let dir = scratch("zombie");
    let ctl = dir.join("ctl");
    let mut child = Command::new(native("serve_sim"))
        .args(["--requests", "1", "--idle-ms", "30000"])
        .env("LD_PRELOAD", shim_lib())
        .env("KVSCOPE_OUT", &dir)
        .env("KVSCOPE_CTL_DIR", &ctl)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    let pid = child.id().to_string();
    // Not waited for: a zombie until the end of the test.
    let zombie = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    });
    assert!(zombie, "pid {pid} did not become a zombie");
    for args in [vec!["mark", &pid, "x"], vec!["dump", &pid]] {
        let out = kvscope_within(&args, &[("KVSCOPE_CTL_DIR", ctl.to_str().unwrap())], 20);
        one_error_line(&out, "has exited", &format!("{args:?}"));
    }
    let _ = child.wait();
}

/// serve_sim under the shim, idle for `idle_ms` after one request, with
/// its own control directory, writing reports to `out`; `env` adds to its
/// environment. Returned once its shim can answer requests.
fn idle_server(out: &Path, ctl: &Path, idle_ms: &str, env: &[(&str, &str)]) -> std::process::Child {
    let mut c = Command::new(native("serve_sim"));
    c.args(["--requests", "1", "--idle-ms", idle_ms])
        .env("LD_PRELOAD", shim_lib())
        .env("KVSCOPE_OUT", out)
        .env("KVSCOPE_SAMPLE_MS", "20")
        .env("KVSCOPE_CTL_DIR", ctl)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    child
}

/// A process started with its own KVSCOPE_CTL_DIR is reached by `kvscope
/// mark/dump` run without it: they use the process's (they left the
/// request in the default directory, waited 10 s and asked whether the
/// shim was loaded).
#[test]
fn mark_and_dump_use_the_processs_own_control_directory() {
    let dir = scratch("own-ctl");
    let ctl = dir.join("ctl");
    let mut child = idle_server(&dir, &ctl, "3000", &[]);
    let pid = child.id().to_string();
    for args in [vec!["mark", &pid, "from outside"], vec!["dump", &pid]] {
        let t = std::time::Instant::now();
        let out = Command::new(kvscope_bin())
            .args(&args)
            .env_remove("KVSCOPE_CTL_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{args:?}");
    }
    assert!(child.wait().unwrap().success());
    let dump = reports_in(&dir)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("-dump-"))
        .expect("a dump report");
    let labels = load(&dump)["markers"].to_string();
    assert!(labels.contains("from outside"), "{labels}");
}

/// `kvscope dump PID` whose process can write no report (no writable
/// directory): one error line on stderr and nothing on stdout, where
/// scripts take the report's path (the failure was printed there).
#[test]
fn dump_without_a_report_is_an_error_on_stderr() {
    let dir = scratch("dump-nowhere");
    let ctl = dir.join("ctl");
    let nowhere = Path::new("/proc/kvscope-nowhere");
    let mut child = idle_server(
        nowhere,
        &ctl,
        "30000",
        &[("TMPDIR", "/proc/kvscope-nowhere")],
    );
    let pid = child.id().to_string();
    let out = kvscope_within(
        &["dump", &pid],
        &[("KVSCOPE_CTL_DIR", ctl.to_str().unwrap())],
        30,
    );
    let _ = child.kill();
    let _ = child.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("kvscope: error: ") && err.contains("no report of it appeared"),
        "{err}"
    );
}

/// `kvscope dump PID` says which file the process wrote.
#[test]
fn dump_names_the_report_it_asked_for() {
    let dir = scratch("dump-names");
    let ctl = dir.join("ctl");
    let mut child = idle_server(&dir, &ctl, "3000", &[]);
    let pid = child.id().to_string();
    let out = kvscope_within(
        &["dump", &pid, "where did it go"],
        &[("KVSCOPE_CTL_DIR", ctl.to_str().unwrap())],
        20,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = text
        .trim()
        .strip_prefix(&format!("process {pid} wrote "))
        .unwrap_or_else(|| panic!("{text}"));
    let rep = load(std::path::Path::new(path));
    assert_eq!(rep["reason_detail"], "where did it go");
    assert!(path.starts_with(dir.to_str().unwrap()), "{path}");
    assert!(child.wait().unwrap().success());
}

/// Small behaviours that were silent: `run` makes its directory 0700,
/// `report --html` never overwrites the report it reads, `report --model`
/// with an unknown model is an error, and the shim's fallback directory is
/// announced on stderr.
#[test]
fn small_silent_behaviours_are_said_or_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("silent");
    let out_dir = dir.join("fresh-reports");
    let out = Command::new(kvscope_bin())
        .args(["run", "--out"])
        .arg(&out_dir)
        .arg("--")
        .arg(native("serve_sim"))
        .args(["--requests", "1"])
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mode = std::fs::metadata(&out_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");

    let rep = make_report("silent-seed", &["--requests", "1"]);
    let before = std::fs::read(&rep).unwrap();
    let r = rep.to_str().unwrap();
    let out = kvscope(&["report", r, "--html", r]);
    one_error_line(
        &out,
        "that is the report being read",
        "--html onto the input",
    );
    assert_eq!(std::fs::read(&rep).unwrap(), before, "the report is intact");

    let out = kvscope(&["report", r, "--model", "bogus"]);
    one_error_line(&out, "no such file or preset", "report --model bogus");

    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let sim = run(
        "serve_sim",
        &["--requests", "1"],
        &[
            ("KVSCOPE_OUT", "/proc/kvscope-nope"),
            ("TMPDIR", tmp.to_str().unwrap()),
        ],
        true,
        &dir,
    );
    let warnings: Vec<String> = sim
        .stderr()
        .lines()
        .filter(|l| l.starts_with("kvscope: warning: reports go to"))
        .map(String::from)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", sim.stderr());
    assert!(
        warnings[0].contains(tmp.to_str().unwrap()) && warnings[0].contains("/proc/kvscope-nope"),
        "{warnings:?}"
    );
}

/// The demo reads well in 80 columns: no raw simulator lines, and it says
/// that the check's exit status is the check's (the demo's own is 0).
#[test]
fn demo_output_fits_80_columns() {
    let out = kvscope(&["demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let wide: Vec<&str> = text.lines().filter(|l| l.chars().count() > 80).collect();
    assert!(wide.is_empty(), "wider than 80 columns: {wide:#?}");
    assert!(!text.contains("   | "), "raw serve_sim lines: {text}");
    assert!(!text.contains("kv_bytes_per_token="), "{text}");
    assert!(!text.contains("-> exit status"), "{text}");
    assert!(
        text.contains("kvscope check exits 1 on this report; the demo itself exits 0"),
        "{text}"
    );
    assert!(text.contains("serve_sim served 8 requests"), "{text}");
}

/// The demo's temporary directory goes whatever ends it: a reader that
/// stops (`kvscope demo | head -1`), Ctrl-C, a failure.
#[test]
fn demo_leaves_no_temporary_directory() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let tmp = scratch("demo-tmp");
    let left = || std::fs::read_dir(&tmp).unwrap().count();
    let demo = |env: &[(&str, &str)]| {
        let mut c = Command::new(kvscope_bin());
        c.arg("demo")
            .env("TMPDIR", &tmp)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        c.spawn().unwrap()
    };

    // | head -1
    let mut child = demo(&[]);
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("== 1."), "{first}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
    assert_eq!(left(), 0, "after a closed pipe");

    // Ctrl-C while the workload runs.
    let child = demo(&[]);
    let t = std::time::Instant::now();
    while left() == 0 && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(left(), 1, "the demo made its directory");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out.status);
    assert_eq!(left(), 0, "after Ctrl-C");

    // serve_sim fails.
    let native = scratch("demo-failing-native");
    let sim = native.join("serve_sim");
    std::fs::write(&sim, "#!/bin/sh\necho 'simulated failure' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = demo(&[("KVSCOPE_NATIVE_DIR", native.to_str().unwrap())])
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("simulated failure"), "{err}");
    assert_eq!(left(), 0, "after a failure");
}

/// `kvscope report` lists alike live allocations once, with their count
/// (not 32 identical "1.72 GiB cudaMalloc kv_cache" rows).
#[test]
fn report_groups_alike_allocations() {
    let p = make_report(
        "report-groups",
        &["--pattern", "vllm", "--requests", "2", "--leak", "8MiB"],
    );
    let out = kvscope(&["report", p.to_str().unwrap(), "--top", "50"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("largest live allocations"))
        .skip(2)
        .take_while(|l| l.starts_with("    ") && l.contains(" x "))
        .collect();
    let kv: Vec<&&str> = rows.iter().filter(|l| l.contains("kv_cache")).collect();
    assert_eq!(kv.len(), 1, "{text}");
    assert!(
        kv[0].trim_start().starts_with("32 x") && kv[0].contains("1.72 GiB"),
        "{text}"
    );
    let unique: std::collections::BTreeSet<&&str> = rows.iter().collect();
    assert_eq!(unique.len(), rows.len(), "{text}");
}

/// Issue 12: `--gpu-mem` needs a unit (a bare 80 would be 80 bytes), and
/// takes what nvidia-smi prints.
#[test]
fn gpu_memory_needs_a_unit() {
    let out = kvscope(&["fit", "--model", "llama-3.1-8b", "--gpu-mem", "80"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no unit") && err.contains("81559MiB"), "{err}");
    for mem in ["81559MiB", "80GB", "80GiB"] {
        let out = kvscope(&[
            "fit",
            "--model",
            "llama-3.1-8b",
            "--gpu-mem",
            mem,
            "--context",
            "8192",
        ]);
        assert_eq!(out.status.code(), Some(0), "{mem}");
    }
}

/// `fit` exits 1 when the workload does not fit (and says so in --help).
#[test]
fn fit_exits_1_when_it_does_not_fit() {
    let out = kvscope(&["fit", "--model", "llama-3.1-70b", "--gpu-mem", "24GiB"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("does NOT fit"));
    // The weights alone are over the budget: the way out is said.
    assert!(text.contains("nothing is left for the KV cache"), "{text}");
    let help = kvscope(&["fit", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("1 when it does not"));
}

/// Configs with geometry no model has are refused with the field named.
#[test]
fn impossible_configs_are_refused_with_the_field_named() {
    let dir = scratch("impossible-configs");
    let base = r#""hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 32000, "torch_dtype": "bfloat16""#;
    for (extra, field) in [
        (
            r#""num_attention_heads": 32, "num_key_value_heads": 64"#,
            "num_key_value_heads",
        ),
        (
            r#""num_attention_heads": 32, "quantization_config": {"quant_method": "awq", "bits": 0}"#,
            "quantization_config.bits",
        ),
        (
            r#""num_attention_heads": 32, "max_position_embeddings": 0"#,
            "max_position_embeddings",
        ),
    ] {
        let p = dir.join(format!("{field}.json"));
        std::fs::write(&p, format!("{{{base}, {extra}}}")).unwrap();
        let out = kvscope(&["fit", "--model", p.to_str().unwrap(), "--gpu-mem", "80GiB"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(field), "{err}");
    }
}

/// A report with a section cut out is refused, not read as "nothing
/// happened"; `check --model bogus` is one line and exit 2.
#[test]
fn a_report_with_a_section_cut_out_is_refused() {
    let dir = scratch("cut-sections");
    let p = make_report("cut-sections-run", &["--requests", "2", "--leak", "8MiB"]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    for key in ["devices", "live", "process"] {
        let mut cut = v.clone();
        cut.as_object_mut().unwrap().remove(key);
        let f = dir.join(format!("no-{key}.json"));
        std::fs::write(&f, serde_json::to_vec(&cut).unwrap()).unwrap();
        let out = kvscope(&["check", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("missing field `{key}")), "{err}");
    }
    let out = kvscope(&["check", p.to_str().unwrap(), "--model", "bogus"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), err.lines().count()),
        (Some(2), 1),
        "{err}"
    );
}

/// `kvscope run` under KVSCOPE_DISABLE=1 says why there is no report.
#[test]
fn run_says_when_the_shim_was_disabled() {
    let dir = scratch("run-disabled");
    let out = Command::new(kvscope_bin())
        .args(["run", "--out"])
        .arg(&dir)
        .arg("--")
        .arg(native("serve_sim"))
        .args(["--requests", "1"])
        .env("KVSCOPE_DISABLE", "1")
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("KVSCOPE_DISABLE is set"), "{err}");
}

/// Help texts name only flags the command takes: `--model`'s help, shared
/// by `check`, `report`, `diagnose` and `fit`, points to `kvscope fit --list`
/// (a bare "see --list" sent `check --list` users to an error), and `run
/// --out` says it defaults to `$KVSCOPE_OUT` first, as it does.
#[test]
fn help_texts_point_to_flags_that_exist() {
    for cmd in ["check", "report", "diagnose", "fit"] {
        let help = kvscope(&[cmd, "--help"]);
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            text.contains("`kvscope fit --list`"),
            "{cmd} --help: {text}"
        );
        assert!(!text.contains("(see --list)"), "{cmd} --help: {text}");
    }
    let refused = kvscope(&["check", "--list"]);
    assert_eq!(refused.status.code(), Some(2));
    let listed = kvscope(&["fit", "--list"]);
    assert_eq!(listed.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("llama-3.1-8b"));

    let help = kvscope(&["run", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("$KVSCOPE_OUT"), "run --help: {text}");

    // Every argument of `diff` says which report it is.
    let help = kvscope(&["diff", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for arg in ["<A>", "<B>"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(arg))
            .unwrap_or_else(|| panic!("diff --help lists {arg}: {text}"));
        assert!(
            line.trim().len() > arg.len(),
            "{arg} has no description: {text}"
        );
    }
}

/// Pinned host memory is on no device: in a report of two devices its line
/// has a heading of its own, and does not sit under the last device listed.
#[test]
fn pinned_host_memory_is_not_listed_under_a_device() {
    let dir = scratch("host-not-under-a-device");
    let r = run("scripted", &[], &[("SIMCUDA_DEVICES", "2")], true, &dir);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let exit = r
        .reports
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
        .unwrap();
    let out = kvscope(&["report", exit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| lines.iter().position(|l| l.starts_with(needle));
    let device1 = at("  device 1").expect("the second device is listed");
    let heading = at("  host (pinned memory, on no device)").expect("a host heading");
    let pinned = at("    pinned   live").expect("the pinned host line");
    assert!(device1 < heading && heading + 1 == pinned, "{text}");
}
