//! Who allocated it: every live byte attributed to the file that called CUDA
//! (the outermost hooked call's return address), through a linked library,
//! a dlopen()ed one, a driver entry point from cuGetProcAddress and a
//! statically linked runtime.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// Live bytes per calling file name, summed from the rows themselves.
fn bytes_by_file(rep: &Value) -> BTreeMap<String, u64> {
    let sites = rep["callers"].as_array().expect("callers[]");
    let columns: Vec<&str> = rep["live"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let col = |name: &str| columns.iter().position(|c| *c == name).unwrap();
    let (size, caller) = (col("size"), col("caller"));
    let mut out = BTreeMap::new();
    for row in rep["live"]["allocations"].as_array().unwrap() {
        let file = match row[caller].as_u64() {
            Some(i) => {
                let f = sites[i as usize]["file"].as_str().unwrap();
                f.rsplit('/').next().unwrap().to_string()
            }
            None => "?".into(),
        };
        *out.entry(file).or_default() += u(&row[size]);
    }
    out
}

/// The `by_caller` totals of device 0.
fn totals(rep: &Value) -> BTreeMap<String, u64> {
    rep["live"]["by_caller"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| u(&t["device"]) == 0)
        .map(|t| (t["caller"].as_str().unwrap().to_string(), u(&t["bytes"])))
        .collect()
}

fn check(client: &str) {
    let dir = scratch(client);
    let r = run(client, &[], &[], true, &dir);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let want: BTreeMap<String, u64> = expectations(&r.stdout())
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("caller.")?.to_string(), v)))
        .collect();
    assert!(!want.is_empty(), "{}", r.stdout());
    let rep = r.report("exit");
    assert_eq!(bytes_by_file(&rep), want, "rows of {client}");
    assert_eq!(totals(&rep), want, "by_caller of {client}");
    // The events name their callers too: every alloc event has one.
    for e in rep["events"].as_array().unwrap() {
        if e["op"] == "alloc" {
            let i = e["caller"].as_u64().unwrap_or_else(|| panic!("{e}"));
            let file = rep["callers"][i as usize]["file"].as_str().unwrap();
            assert!(want.keys().any(|w| file.ends_with(w.as_str())), "{file}");
        }
    }
}

#[test]
fn each_byte_is_attributed_to_the_file_that_asked_for_it() {
    // The app itself (runtime and cuGetProcAddress), a linked library, a dlopen()ed one.
    check("who_app");
}

#[test]
fn a_statically_linked_runtime_is_attributed_to_its_program() {
    check("who_static");
}

#[test]
fn the_reader_shows_live_memory_by_caller() {
    let dir = scratch("reader");
    let r = run("who_app", &[], &[], true, &dir);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let report = r.path("exit");
    let out = std::process::Command::new(kvscope_bin())
        .arg("report")
        .arg(report)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    common::assert_ok(&out);
    for file in ["libwholib.so", "libwhoplug.so", "who_app"] {
        assert!(text.contains(file), "{file} missing from:\n{text}");
    }
}

/// Stacks of big allocations: only at or above KVSCOPE_STACK_MIN, the
/// shim's own frames left out, the allocating library first and the program
/// below it; none at the default threshold (64 MiB) for this program, none
/// with 0.
#[test]
fn stacks_are_kept_only_for_allocations_above_the_threshold() {
    let dir = scratch("stacks");
    let r = run(
        "who_app",
        &[],
        &[("KVSCOPE_STACK_MIN", "8388608")],
        true,
        &dir,
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let rep = r.report("exit");
    let stacks = rep["stacks"].as_array().unwrap();
    // One allocation of 10 MiB (the dlopen()ed library's) is at least 8 MiB.
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    assert_eq!(u(&stacks[0]["size"]), 10 << 20);
    let files: Vec<String> = stacks[0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let f = rep["callers"][u(i) as usize]["file"].as_str().unwrap();
            f.rsplit('/').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        files.first().map(String::as_str),
        Some("libwhoplug.so"),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f == "who_app"), "{files:?}");
    assert!(
        !files.iter().any(|f| f.starts_with("libkvscope")),
        "{files:?}"
    );
    // The address is a live row's.
    let live = rep["live"]["allocations"].as_array().unwrap();
    assert!(live.iter().any(|row| row[1] == stacks[0]["address"]));
    let out = std::process::Command::new(kvscope_bin())
        .arg("report")
        .arg(&r.reports[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stacks of the largest live allocations"),
        "{text}"
    );
    assert!(text.contains("who_lib_allocate (libwhoplug.so)"), "{text}");

    for (min, why) in [(None, "default 64 MiB"), (Some("0"), "off")] {
        let dir = scratch(&format!("stacks-{why}"));
        let env: Vec<(&str, &str)> = min.map(|m| ("KVSCOPE_STACK_MIN", m)).into_iter().collect();
        let r = run("who_app", &[], &env, true, &dir);
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let rep = r.report("exit");
        assert!(rep["stacks"].as_array().unwrap().is_empty(), "{why}");
    }
}

/// At an out-of-memory failure, the post-mortem and the check's finding
/// say who made the largest live allocations (a 512 MiB one: its stack).
#[test]
fn the_post_mortem_names_who_made_the_largest_allocations() {
    let dir = scratch("oom");
    let r = run("errors", &["oom"], &[], true, &dir);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let pm = r.report("oom");
    let stacks = pm["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    assert_eq!(u(&stacks[0]["size"]), 512 << 20);
    let report = r
        .reports
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-oom.json"))
        .unwrap();
    for (args, want) in [
        (vec!["report"], "MiB cudaMalloc at 0x"),
        (vec!["check"], "made by errors"),
    ] {
        let out = std::process::Command::new(kvscope_bin())
            .args(&args)
            .arg(report)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains(want));
        assert!(
            line.is_some_and(|l| l.contains("errors+0x")),
            "{args:?}: no line with {want:?} naming the program:\n{text}"
        );
    }
}
