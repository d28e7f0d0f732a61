//! Fleet monitoring end to end: processes under the shim publish their
//! state, `kvscope exporter` serves it, `kvscope watch` shows it.

mod common;
mod live;

use live::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

#[test]
fn the_state_file_follows_the_process() {
    let dir = common::scratch("state_file");
    let state = dir.join("state");
    let mut p = holder(
        &state,
        &dir,
        &[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("KVSCOPE_MODEL_NAME", "m-7b"),
        ],
    );
    let file = wait_for("the state file", T, || state_file(&state, p.pid()));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&file), 0o600);
    let s: Value = wait_for("the allocation in the state", T, || {
        let v: Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
        (v["devices"][0]["memory"]["live_bytes"] == HELD).then_some(v)
    });
    assert_eq!(s["schema"], "kvscope.state.v1");
    assert_eq!(s["pid"], p.pid());
    assert_eq!(
        (s["rank"].clone(), s["world_size"].clone()),
        (3.into(), 8.into())
    );
    assert_eq!(s["model_name"], "m-7b");
    let d = &s["devices"][0];
    assert_eq!(d["memory"]["live_count"], 1);
    assert_eq!(d["memory"]["peak_bytes"], HELD);
    // The stand-in driver's UUID: "kvsim" and the ordinal.
    assert_eq!(d["uuid"], "GPU-6b767369-6d00-0000-0000-000000000000");
    assert!(s["command"].as_str().unwrap().contains("signals wait"));
    // SIGTERM: the final report, and the file goes.
    assert_eq!(p.stop(libc::SIGTERM, T), -libc::SIGTERM);
    assert!(
        !file.exists(),
        "the state file is removed when the process ends"
    );
}

#[test]
fn the_shim_refuses_a_directory_others_can_write() {
    let dir = common::scratch("refused");
    let state = dir.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = common::run(
        "signals",
        &["idle-exit"],
        &[
            ("KVSCOPE_STATE_DIR", state.to_str().unwrap()),
            ("KVSCOPE_SAMPLE_MS", "20"),
        ],
        true,
        &dir,
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
}

#[test]
fn the_exporter_shows_a_process_and_forgets_it_when_it_ends() {
    let dir = common::scratch("exporter");
    let state = dir.join("state");
    let mut p = holder(&state, &dir, &[("RANK", "1"), ("KVSCOPE_RUN_ID", "job-9")]);
    let pid = p.pid().to_string();
    let (_e, addr) = exporter(&state, &["--model-name", "served"]);
    let page = wait_for("the process on the page", T, || {
        let (status, page) = get(addr, "/metrics", None);
        assert_eq!(status, 200);
        value(&page, "kvscope_live_bytes", &[("pid", &pid)]).map(|_| page)
    });
    let dev = [
        ("pid", pid.as_str()),
        ("cuda_device", "0"),
        ("UUID", "GPU-6b767369-6d00-0000-0000-000000000000"),
        ("model_name", "served"),
        ("space", "device"),
    ];
    assert_eq!(
        value(&page, "kvscope_live_bytes", &dev),
        Some(HELD as f64),
        "{page}"
    );
    assert_eq!(value(&page, "kvscope_live_allocations", &dev), Some(1.0));
    assert_eq!(value(&page, "kvscope_peak_bytes", &dev), Some(HELD as f64));
    let host = hostname();
    assert_eq!(
        value(&page, "kvscope_live_bytes", &[("Hostname", &host)]),
        Some(HELD as f64)
    );
    let info = [("pid", pid.as_str()), ("rank", "1"), ("run_id", "job-9")];
    assert_eq!(
        value(&page, "kvscope_process_info", &info),
        Some(1.0),
        "{page}"
    );
    assert!(value(&page, "kvscope_device_total_bytes", &[("pid", &pid)]).unwrap() > 0.0);
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            page.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}"
        );
        assert!(
            page.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    if let Some(promtool) = prometheus_tool("promtool") {
        check_metrics(&promtool, &page);
    }
    // OpenMetrics on request.
    let (_, om) = get(
        addr,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE kvscope_allocations counter"));
    assert_eq!(get(addr, "/nothing", None).0, 404);
    // The process ends: its series go.
    p.stop(libc::SIGTERM, T);
    wait_for("the process to leave the page", T, || {
        let (_, page) = get(addr, "/metrics", None);
        (!page.contains(&format!("pid=\"{pid}\""))).then_some(())
    });
}

fn check_metrics(promtool: &std::path::Path, page: &str) {
    use std::io::Write;
    let mut c = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_killed_process_is_stale_and_dropped() {
    let dir = common::scratch("stale");
    let state = dir.join("state");
    let mut p = holder(&state, &dir, &[]);
    let file = wait_for("the state file", T, || state_file(&state, p.pid()));
    p.stop(libc::SIGKILL, T);
    assert!(file.exists(), "SIGKILL leaves the file");
    let out = common::kvscope(&["exporter", "--once", "--state-dir", state.to_str().unwrap()]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!page.contains(&format!("pid=\"{}\"", p.pid())), "{page}");
    assert_eq!(value(&page, "kvscope_exporter_stale_files", &[]), Some(1.0));
    assert_eq!(value(&page, "kvscope_exporter_processes", &[]), Some(0.0));
    assert!(!file.exists(), "the exporter removes a stale file");
}

#[test]
fn a_starting_process_sweeps_stale_files() {
    let dir = common::scratch("sweep");
    let state = dir.join("state");
    let mut p = holder(&state, &dir, &[]);
    let file = wait_for("the state file", T, || state_file(&state, p.pid()));
    p.stop(libc::SIGKILL, T);
    let q = holder(&state, &dir, &[]);
    wait_for("the new process's file", T, || state_file(&state, q.pid()));
    assert!(!file.exists(), "the killed process's file is swept");
}

#[test]
fn thirty_two_processes_make_one_page_with_the_right_totals() {
    let dir = common::scratch("many");
    let state = dir.join("state");
    let mut procs: Vec<Guard> = (0..32).map(|_| holder(&state, &dir, &[])).collect();
    let textfile = dir.join("kvscope.prom");
    let (_e, addr) = exporter(
        &state,
        &[
            "--textfile",
            textfile.to_str().unwrap(),
            "--interval",
            "0.2",
        ],
    );
    let page = wait_for(
        "32 processes holding their memory",
        Duration::from_secs(90),
        || {
            let (_, page) = get(addr, "/metrics", None);
            let held = sum(&page, "kvscope_live_bytes", &[("space", "device")]);
            (value(&page, "kvscope_exporter_processes", &[]) == Some(32.0)
                && held == (32 * HELD) as f64)
                .then_some(page)
        },
    );
    for p in &procs {
        let pid = p.pid().to_string();
        assert_eq!(
            value(&page, "kvscope_process_info", &[("pid", &pid)]),
            Some(1.0)
        );
    }
    // The textfile (rewritten every 0.2 s) comes to say the same.
    wait_for("the textfile's totals", T, || {
        let file = std::fs::read_to_string(&textfile).ok()?;
        (sum(&file, "kvscope_live_bytes", &[("space", "device")]) == (32 * HELD) as f64)
            .then_some(())
    });
    for p in &mut procs {
        p.stop(libc::SIGTERM, T);
    }
    wait_for("every process gone from the page", T, || {
        let (_, page) = get(addr, "/metrics", None);
        (value(&page, "kvscope_exporter_processes", &[]) == Some(0.0)).then_some(())
    });
}

#[test]
fn a_taken_address_is_one_line_and_a_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = common::kvscope(&["exporter", "--listen", &addr, "--state-dir", "/nonexistent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot listen on") && !err.contains("panicked"),
        "{err}"
    );
    let out = common::kvscope(&["exporter"]);
    assert_eq!(out.status.code(), Some(2));
    // --once prints once: with --listen, one of them is a mistake.
    let out = common::kvscope(&["exporter", "--once", "--listen", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("'--once' cannot be used with"), "{err}");
}

/// A page printed once from a state directory that does not exist says so
/// on stderr (the page itself has no process), and is no error.
#[test]
fn once_from_a_missing_state_directory_says_so() {
    let out = common::kvscope(&["exporter", "--once", "--state-dir", "/nonexistent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("no state directory /nonexistent yet"), "{err}");
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains("kvscope_exporter_processes"), "{page}");
}

#[test]
fn watch_piped_prints_lines_and_survives_head() {
    let dir = common::scratch("watch_piped");
    let state = dir.join("state");
    let p = holder(&state, &dir, &[]);
    wait_for("the state file", T, || state_file(&state, p.pid()));
    let out = common::kvscope(&[
        "watch",
        "--count",
        "2",
        "--interval",
        "0.1",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !text.contains('\x1b'),
        "no escape sequences when piped: {text:?}"
    );
    let mine: Vec<_> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(&p.pid().to_string()))
        .collect();
    assert_eq!(mine.len(), 2, "a line per refresh: {text}");
    assert!(mine[0].contains("16.0 MiB"), "{text}");
    // `| head -1` closes the pipe while watch writes: no panic, no error.
    let sh = format!(
        "{} watch --interval 0.05 --state-dir {} | head -1",
        common::kvscope_bin().display(),
        state.display()
    );
    let out = Command::new("sh").args(["-c", &sh]).output().unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PID that is not on this host is refused in one line; a process that
/// ends while watched ends the watch, its last frame shown.
#[test]
fn watch_refuses_an_absent_pid_and_ends_with_the_process_it_watched() {
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let started = Instant::now();
    let out = common::kvscope(&["watch", &pid.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("no process {pid}")), "{err}");
    assert!(started.elapsed() < T);

    let dir = common::scratch("watch_ends");
    let state = dir.join("state");
    // Not reaped while watched: a zombie counts as ended.
    let mut child = Command::new("sleep").arg("1").spawn().unwrap();
    let pid = child.id();
    let out = common::kvscope(&[
        "watch",
        "--interval",
        "0.1",
        "--state-dir",
        state.to_str().unwrap(),
        &pid.to_string(),
    ]);
    child.wait().unwrap();
    common::assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("process {pid} ended")), "{text}");
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    assert_eq!(
        unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) },
        0
    );
    let end = buf.iter().position(|&b| b == 0).unwrap();
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `kvscope watch` on a pseudo-terminal, as its controlling terminal: it
/// draws the process, and Ctrl-C (the byte 0x03, turned into SIGINT by the
/// terminal) ends it with status 0 and the cursor shown again.
#[test]
fn watch_in_a_terminal_shows_the_process_and_ends_on_ctrl_c() {
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let dir = common::scratch("watch_pty");
    let state = dir.join("state");
    let p = holder(&state, &dir, &[]);
    wait_for("the state file", T, || state_file(&state, p.pid()));
    let (mut master, slave) = {
        let (mut m, mut s) = (0, 0);
        // SAFETY: valid out-pointers; no name, termios or window size.
        let r = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty");
        // SAFETY: fresh descriptors that nothing else owns.
        unsafe { (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
    };
    let mut cmd = Command::new(common::kvscope_bin());
    cmd.args(["watch", "--interval", "0.1", "--state-dir"])
        .arg(&state)
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // A session of its own with the terminal as controlling tty, so
            // that the terminal's ^C reaches it as SIGINT.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut watch = Guard(cmd.spawn().unwrap());
    drop(slave);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let pid = p.pid().to_string();
    wait_for("the process on the terminal", T, || {
        while let Ok(chunk) = rx.try_recv() {
            seen.extend(chunk);
        }
        let text = String::from_utf8_lossy(&seen);
        (text.contains(&pid) && text.contains("16.0 MiB")).then_some(())
    });
    assert!(
        String::from_utf8_lossy(&seen).contains("\x1b[H\x1b[2J"),
        "redraws in place"
    );
    master.write_all(b"\x03").unwrap();
    let code = watch.stop(0, T); // signal 0: only wait
    assert_eq!(code, 0, "Ctrl-C ends watch cleanly");
    while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.extend(chunk);
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("\x1b[?25h"),
        "the cursor is shown again"
    );
}
