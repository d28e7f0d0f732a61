//! What a report may hold and who may talk to the shim.

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::Duration;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn reports_are_private_and_hold_no_foreign_environment() {
    let dir = scratch("private").join("reports");
    let r = run(
        "scripted",
        &[],
        &[
            ("SIMCUDA_DEVICES", "2"),
            ("API_TOKEN", "secret-value"),
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("KVSCOPE_SAMPLE_MS", "50"),
        ],
        true,
        &dir,
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    let p = &r.reports[0];
    assert_eq!(std::fs::metadata(p).unwrap().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(p).unwrap();
    assert!(
        !text.contains("secret-value"),
        "a foreign variable reached the report"
    );
    let rep = load(p);
    let env: Vec<&String> = rep["process"]["env"].as_object().unwrap().keys().collect();
    assert!(env.iter().all(|k| k.starts_with("KVSCOPE_")), "{env:?}");
    assert!(env.iter().any(|k| *k == "KVSCOPE_SAMPLE_MS"), "{env:?}");
    assert_eq!(rep["process"]["launch"]["rank"], 3);
    assert_eq!(rep["process"]["launch"]["world_size"], 8);
}

#[test]
fn the_control_channel_takes_requests_from_this_user_only() {
    let dir = scratch("channel");
    let ctl = dir.join("ctl");
    let mut child = Command::new(native("serve_sim"))
        .args(["--requests", "2", "--idle-ms", "2500"])
        .env("LD_PRELOAD", shim_lib())
        .env("KVSCOPE_OUT", &dir)
        .env("KVSCOPE_SAMPLE_MS", "20")
        .env("KVSCOPE_CTL_DIR", &ctl)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mine = ctl.join(pid.to_string());
    std::fs::create_dir_all(&mine).unwrap();
    for d in [&ctl, &mine] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // A request another user planted (root can make one to test with), and a
    // symlink pretending to be a request.
    let root = is_root();
    if root {
        let planted = mine.join("0-planted.mark");
        std::fs::write(&planted, "planted").unwrap();
        std::os::unix::fs::chown(&planted, Some(12345), None).unwrap();
    } else {
        eprintln!("not root: the foreign-owner case is skipped");
    }
    let target = dir.join("target.txt");
    std::fs::write(&target, "via symlink").unwrap();
    std::os::unix::fs::symlink(&target, mine.join("1-link.mark")).unwrap();
    // A request still being written (hidden until renamed into place).
    std::fs::write(mine.join(".2-half.mark"), "half written").unwrap();
    let kv = |args: &[&str]| {
        Command::new(kvscope_bin())
            .args(args)
            .env("KVSCOPE_CTL_DIR", &ctl)
            .output()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(200));
    let ok = kv(&["mark", &pid.to_string(), "legit"]);
    common::assert_ok(&ok);
    // A directory others may write to: the reader refuses it in one line.
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = kv(&["mark", &pid.to_string(), "after chmod"]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("closed to others"), "{err}");
    assert!(child.wait().unwrap().success());
    let rep = load(
        reports_in(&dir)
            .iter()
            .find(|p| p.to_string_lossy().ends_with("-exit.json"))
            .expect("exit report"),
    );
    let labels: Vec<&str> = rep["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["label"].as_str().unwrap())
        .collect();
    assert!(labels.contains(&"legit"), "{labels:?}");
    assert!(!labels.contains(&"via symlink"), "{labels:?}");
    assert!(!labels.contains(&"planted"), "{labels:?}");
    assert!(!labels.contains(&"half written"), "{labels:?}");
    // Ignored requests stay where they were put; the shim never acts on them.
    assert!(mine.join("1-link.mark").symlink_metadata().is_ok());
    assert!(mine.join(".2-half.mark").exists());
    if root {
        assert!(mine.join("0-planted.mark").exists());
    }
}
