//! `kvscope diagnose` against a stand-in server that fails (answers errors,
//! never answers, dies mid-run), a URL with nothing listening, a server
//! without the shim: each one clear line and the right exit status. Needs
//! python3; skipped without it unless KVSCOPE_REQUIRE_PYTHON=1 (as in CI).

mod common;
#[path = "support/diagnose_kit.rs"]
mod kit;
use common::python;
use kit::*;
use std::time::Duration;

#[test]
fn a_server_that_answers_errors_is_one_line_and_what_was_measured_is_reported() {
    if !python() {
        return;
    }
    let dir = setup("errors");
    let stub = start(&dir, true, &["--fail", "errors"], &[]);
    let d = diagnose(&stub, &[]);
    assert_eq!(d.code, 1, "{}\n{}", d.stdout, d.stderr);
    assert_eq!(d.stderr.lines().count(), 1, "{}", d.stderr);
    assert!(d.stderr.contains("answered 500"), "{}", d.stderr);
    // The baseline was measured: the text report follows.
    assert!(
        d.stdout.contains("stopped early") && d.stdout.contains("step 1 baseline"),
        "{}",
        d.stdout
    );
}

#[test]
fn a_server_that_never_answers_is_bounded_by_the_timeout() {
    if !python() {
        return;
    }
    let dir = setup("hang");
    let stub = start(&dir, true, &["--fail", "hang"], &[]);
    let t = std::time::Instant::now();
    let d = diagnose(&stub, &["--timeout", "3"]);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(d.code, 1, "{}\n{}", d.stdout, d.stderr);
    assert!(d.stderr.starts_with("kvscope: error: "), "{}", d.stderr);
    assert!(
        d.stderr.contains("time limit") || d.stderr.contains("timed out"),
        "{}",
        d.stderr
    );
    // The summary says the status the command exits with, and the steps
    // the run never reached are not reported as measured.
    assert!(d.stdout.contains("-> exit status 1"), "{}", d.stdout);
    for step in ["step 3", "step 4"] {
        let line = d
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(step) && l.contains("not run"));
        assert!(
            line.is_some(),
            "{step} not marked as not run:\n{}",
            d.stdout
        );
    }
}

#[test]
fn a_server_that_dies_mid_run_is_a_clear_error() {
    if !python() {
        return;
    }
    let dir = setup("dies");
    // It ends while serving its third request.
    let stub = start(
        &dir,
        true,
        &["--fail", "die:2"],
        &[("KVSCOPE_IDLE_MS", "100")],
    );
    let d = diagnose(&stub, &[]);
    assert_eq!(d.code, 1, "{}\n{}", d.stdout, d.stderr);
    assert!(d.stderr.contains("request d2"), "{}", d.stderr);
    assert!(
        d.stderr.lines().all(|l| l.starts_with("kvscope: error: ")),
        "{}",
        d.stderr
    );
}

#[test]
fn nothing_listening_and_no_shim_are_refused_in_one_line() {
    if !python() {
        return;
    }
    let dir = setup("refusals");
    // A port nobody listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let d = run_diagnose(&dir, &["diagnose", "--url", &url]);
    assert_eq!(d.code, 2, "{}", d.stderr);
    assert!(
        d.stderr
            .contains(&format!("nothing on this host listens on port {port}")),
        "{}",
        d.stderr
    );
    assert_eq!(d.stderr.lines().count(), 1);
    // A host elsewhere needs --pid.
    let d = run_diagnose(&dir, &["diagnose", "--url", "http://192.0.2.1:8000"]);
    assert_eq!(d.code, 2);
    assert!(d.stderr.contains("--pid"), "{}", d.stderr);
    // A server without the shim, found by its port and given by --pid.
    let stub = start(&dir, false, &[], &[]);
    let url = format!("http://127.0.0.1:{}", stub.port);
    let pid = stub.child.id().to_string();
    for args in [
        vec!["diagnose", "--url", &url],
        vec!["diagnose", "--url", &url, "--pid", &pid],
    ] {
        let d = run_diagnose(&dir, &args);
        assert_eq!(d.code, 2, "{}", d.stderr);
        assert_eq!(d.stderr.lines().count(), 1, "{}", d.stderr);
        assert!(
            d.stderr.contains("has the shim loaded") && d.stderr.contains("kvscope run --"),
            "{}",
            d.stderr
        );
        assert!(d.stdout.is_empty());
    }
}

#[test]
fn a_shim_loaded_but_never_started_is_refused_in_one_line() {
    if !python() {
        return;
    }
    // A process under LD_PRELOAD that never calls CUDA (nor dlsym): the
    // shim never starts there, so nobody would take a marker.
    let dir = setup("not-started");
    let (mut sleeper, pid) = common::preloaded_sleeper();
    let d = run_diagnose(
        &dir,
        &["diagnose", "--url", "http://127.0.0.1:9", "--pid", &pid],
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(d.code, 2, "{}", d.stderr);
    assert_eq!(d.stderr.lines().count(), 1, "{}", d.stderr);
    assert!(d.stderr.contains("not running there"), "{}", d.stderr);
}
