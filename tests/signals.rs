//! Dying by a signal under the shim: a final report (reason `signal`) when
//! the host left SIGTERM/SIGINT/SIGHUP at the default action, and exactly the
//! death the process would have had without kvscope; the host's own handlers
//! untouched; forked children and workers that `_exit` covered.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Bound on a stop: KVSCOPE_STOP_WAIT_MS (2 s by default) plus slack.
const BOUND: Duration = Duration::from_secs(4);

struct Stopped {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    after_signal: Duration,
}

/// Runs `cmd`, waits for a "ready" line, sends `sig` (to `target` lines'
/// pid when the ready line names one), and waits at most 20 s for the end.
fn stop(mut cmd: Command, sig: i32) -> Stopped {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut stdout = String::new();
    let started = Instant::now();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 || started.elapsed() > Duration::from_secs(20) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("no ready line: {stdout}");
        }
        stdout.push_str(&line);
        if line.trim() == "ready" {
            break;
        }
    }
    let sent = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(pid, sig) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(20) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("still running 20 s after signal {sig}: a hang");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let after_signal = sent.elapsed();
    out.read_to_string(&mut stdout).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Stopped {
        status,
        stdout,
        stderr,
        after_signal,
    }
}

fn signal_report(dir: &Path) -> Option<serde_json::Value> {
    reports_in(dir)
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-signal.json"))
        .map(|p| load(p))
}

fn client(mode: &str, shim: bool, dir: &Path) -> Command {
    client_command(
        "signals",
        &[mode],
        &[("KVSCOPE_SAMPLE_MS", "50")],
        shim,
        dir,
    )
}

#[test]
fn a_terminating_signal_leaves_a_final_report_and_the_same_death() {
    for (sig, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let plain = stop(
            client("wait", false, &scratch(&format!("plain-{name}"))),
            sig,
        );
        let dir = scratch(&format!("shim-{name}"));
        let shimmed = stop(client("wait", true, &dir), sig);
        assert_eq!(plain.status.signal(), Some(sig), "{name} without the shim");
        assert_eq!(shimmed.status.signal(), Some(sig), "{name}: the same death");
        assert_eq!(shimmed.status.core_dumped(), plain.status.core_dumped());
        assert_eq!(
            (&plain.stdout, &plain.stderr),
            (&shimmed.stdout, &shimmed.stderr)
        );
        assert!(
            shimmed.after_signal < BOUND,
            "{name}: {:?}",
            shimmed.after_signal
        );
        let rep = signal_report(&dir).unwrap_or_else(|| panic!("{name}: no signal report"));
        assert_eq!(rep["reason"], "signal");
        assert_eq!(rep["reason_detail"], name);
        assert_eq!(u(&device(&rep, 0)["memory"]["live_bytes"]), 16 << 20);
        // The reader takes it.
        let out = kvscope(&["report", reports_in(&dir)[0].to_str().unwrap()]);
        common::assert_ok(&out);
    }
}

#[test]
fn the_hosts_own_handlers_keep_control() {
    for mode in ["own", "own-late"] {
        let plain = stop(
            client(mode, false, &scratch(&format!("plain-{mode}"))),
            libc::SIGTERM,
        );
        let dir = scratch(mode);
        let shimmed = stop(client(mode, true, &dir), libc::SIGTERM);
        assert_eq!(plain.status.code(), Some(7), "{mode}: {}", plain.stdout);
        assert_eq!(
            shimmed.status.code(),
            Some(7),
            "{mode}: the host's handler ran"
        );
        assert!(shimmed.stdout.contains("own handler"), "{mode}");
        assert!(
            signal_report(&dir).is_none(),
            "{mode}: the shim's handler ran too"
        );
    }
    // The program sees its own view of the dispositions.
    let dir = scratch("query");
    let q = run("signals", &["query"], &[], true, &dir);
    assert_eq!(q.code(), 0, "{}", q.stderr());
    let plain = run("signals", &["query"], &[], false, &scratch("query-plain"));
    assert_eq!(q.stdout(), plain.stdout());
    assert!(q.stdout().contains("sigterm=default"), "{}", q.stdout());
}

#[test]
fn a_forked_child_dies_at_once() {
    let dir = scratch("fork");
    let mut cmd = client("fork", true, &dir);
    let mut parent = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(parent.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // The child is the parent's only child process.
    let children = std::fs::read_to_string(format!(
        "/proc/{}/task/{}/children",
        parent.id(),
        parent.id()
    ))
    .unwrap();
    let child: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let sent = Instant::now();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child, libc::SIGTERM) };
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(parent.wait().unwrap().success());
    assert!(rest.contains("child=signal 15"), "{rest}");
    assert!(
        sent.elapsed() < Duration::from_millis(1500),
        "{:?}",
        sent.elapsed()
    );
    assert!(
        signal_report(&dir).is_none(),
        "a forked child writes nothing"
    );
}

#[test]
fn a_signal_while_another_report_is_written() {
    let dir = scratch("dumps");
    let s = stop(client("dumps", true, &dir), libc::SIGTERM);
    assert_eq!(s.status.signal(), Some(libc::SIGTERM));
    assert!(s.after_signal < BOUND, "{:?}", s.after_signal);
    assert!(signal_report(&dir).is_some());
}

/// The stop lands on the thread that is writing a dump (the only one that
/// can take it): the signal waits until that thread has let go of the
/// writer, so the final report is still written (it was lost when the
/// handler ran inside the dump, waiting for a writer its own thread held).
#[test]
fn a_signal_on_the_thread_writing_a_report() {
    for i in 0..5 {
        let dir = scratch(&format!("dumps-only-{i}"));
        let s = stop(client("dumps-only", true, &dir), libc::SIGTERM);
        assert_eq!(s.status.signal(), Some(libc::SIGTERM));
        assert!(s.after_signal < BOUND, "{:?}", s.after_signal);
        assert!(signal_report(&dir).is_some(), "run {i}: no final report");
    }
}

#[test]
fn a_worker_that_exits_without_handlers_leaves_its_final_state() {
    let dir = scratch("idle-exit");
    let r = run(
        "signals",
        &["idle-exit"],
        &[("KVSCOPE_SAMPLE_MS", "20"), ("KVSCOPE_IDLE_MS", "200")],
        true,
        &dir,
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let want = expectations(&r.stdout());
    let cp = r.report("checkpoint");
    assert_eq!(
        u(&device(&cp, 0)["memory"]["live_bytes"]),
        want["live_bytes"]
    );
}

/// 100 stops in a row: none hangs, each dies by its signal with a report.
#[test]
fn a_hundred_stops_without_a_hang() {
    for i in 0..100 {
        let dir = scratch("hundred");
        let s = stop(client("wait", true, &dir), libc::SIGTERM);
        assert_eq!(s.status.signal(), Some(libc::SIGTERM), "run {i}");
        assert!(signal_report(&dir).is_some(), "run {i}");
    }
}

/// Python: SIGTERM at the default action, and Ctrl-C with an unhandled
/// KeyboardInterrupt (CPython resets SIGINT to the default and kills itself).
#[test]
fn python_dies_as_it_would_with_a_final_report() {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("KVSCOPE_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
        assert!(!required, "python3 is required (KVSCOPE_REQUIRE_PYTHON=1)");
        eprintln!("python3 not found: skipped");
        return;
    }
    let script = "import ctypes, time\n\
                  rt = ctypes.CDLL('libcudart.so.12')\n\
                  p = ctypes.c_void_p()\n\
                  assert rt.cudaMalloc(ctypes.byref(p), ctypes.c_size_t(8 << 20)) == 0\n\
                  print('ready', flush=True); time.sleep(60)\n";
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let py = |shim: bool, dir: &Path| {
            let mut c = Command::new("python3");
            c.args(["-c", script])
                .env("LD_LIBRARY_PATH", native(""))
                .env("KVSCOPE_OUT", dir)
                .env("KVSCOPE_SAMPLE_MS", "50")
                .env_remove("LD_PRELOAD");
            if shim {
                c.env("LD_PRELOAD", shim_lib());
            }
            c
        };
        let plain = stop(py(false, &scratch(&format!("py-plain-{name}"))), sig);
        let dir = scratch(&format!("py-{name}"));
        let shimmed = stop(py(true, &dir), sig);
        assert_eq!(plain.status.signal(), Some(sig), "{name}: {}", plain.stderr);
        assert_eq!(
            shimmed.status.signal(),
            Some(sig),
            "{name}: {}",
            shimmed.stderr
        );
        assert_eq!(plain.stderr, shimmed.stderr, "{name}");
        let rep = signal_report(&dir).unwrap_or_else(|| panic!("{name}: no signal report"));
        assert_eq!(rep["reason_detail"], name);
    }
}

/// Without the background thread (KVSCOPE_SAMPLE_MS=0) nobody can write the
/// report off the handler: the process dies at once, as without kvscope.
#[test]
fn without_the_background_thread_the_signal_kills_at_once() {
    let dir = scratch("no-thread");
    let cmd = client_command(
        "signals",
        &["wait"],
        &[("KVSCOPE_SAMPLE_MS", "0")],
        true,
        &dir,
    );
    let s = stop(cmd, libc::SIGTERM);
    assert_eq!(s.status.signal(), Some(libc::SIGTERM));
    assert!(
        s.after_signal < Duration::from_millis(1500),
        "{:?}",
        s.after_signal
    );
    assert!(signal_report(&dir).is_none());
}

/// Loaded as PyTorch's pluggable allocator (dlopened, not interposing), the
/// shim takes SIGTERM only while it is at the default; a handler the program
/// sets later replaces it in the kernel, and runs.
#[test]
fn as_a_pluggable_allocator_the_shim_steps_aside_for_the_programs_handler() {
    let lib = shim_lib();
    let dir = scratch("pluggable-signal");
    let mut cmd = client_command(
        "signals",
        &["pluggable", lib.to_str().unwrap()],
        &[("KVSCOPE_SAMPLE_MS", "50")],
        false,
        &dir,
    );
    cmd.env("LD_LIBRARY_PATH", native(""));
    let s = stop(cmd, libc::SIGTERM);
    assert_eq!(s.status.signal(), Some(libc::SIGTERM), "{}", s.stderr);
    let rep = signal_report(&dir).expect("a signal report");
    assert_eq!(rep["modes"][0], "pluggable");

    let dir = scratch("pluggable-own");
    let mut cmd = client_command(
        "signals",
        &["pluggable-own", lib.to_str().unwrap()],
        &[("KVSCOPE_SAMPLE_MS", "50")],
        false,
        &dir,
    );
    cmd.env("LD_LIBRARY_PATH", native(""));
    let s = stop(cmd, libc::SIGTERM);
    assert_eq!(s.status.code(), Some(7), "{}", s.stderr);
    assert!(signal_report(&dir).is_none());
}

/// Containers: the same PID (1) in every run, on one report directory. Each
/// run keeps its own reports (the start time is in the names).
#[test]
fn runs_as_pid_1_keep_their_own_reports() {
    let namespaces = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !namespaces {
        eprintln!("unshare --pid is not available here (it needs root): skipped");
        return;
    }
    let dir = scratch("pid1");
    for _ in 0..2 {
        let out = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                "env",
                "SIMCUDA_DEVICES=2",
            ])
            .arg(format!("LD_PRELOAD={}", shim_lib().display()))
            .arg(format!("KVSCOPE_OUT={}", dir.display()))
            .arg(native("scripted"))
            .env_remove("LD_PRELOAD")
            .output()
            .unwrap();
        common::assert_ok(&out);
        // Start times differ by at least a millisecond.
        std::thread::sleep(Duration::from_millis(5));
    }
    let exits: Vec<_> = reports_in(&dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-exit.json"))
        .collect();
    assert_eq!(exits.len(), 2, "{exits:?}");
    for p in &exits {
        assert_eq!(u(&load(p)["process"]["pid"]), 1, "{}", p.display());
    }
}

/// `kill` (or `docker stop`) aimed at `kvscope run`: the command gets the
/// SIGTERM and dies by it with its final report, and `kvscope run` sums its
/// reports up, cleans its site folder and exits as a shell would (143).
#[test]
fn kvscope_run_forwards_a_stop_to_its_command() {
    let dir = scratch("run-stop");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = Command::new(kvscope_bin());
    cmd.args(["run", "--out"])
        .arg(&dir)
        .arg("--")
        .arg(native("signals"))
        .arg("wait")
        .env("KVSCOPE_SAMPLE_MS", "50")
        .env("TMPDIR", &tmp)
        .env_remove("LD_PRELOAD");
    let s = stop(cmd, libc::SIGTERM);
    assert_eq!(s.status.code(), Some(143), "{}", s.stderr);
    assert!(s.stderr.contains("-signal.json"), "{}", s.stderr);
    assert!(signal_report(&dir).is_some());
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the site folder is left"
    );
}
