//! The page's "Who allocated it" section, read back from Chromium's DOM:
//! live memory by calling file and the stacks of the big allocations (from
//! the who_app client under the shim), every string from the report shown
//! as text (a hostile file name and symbol), and a one-line note for a
//! report without callers (a real-GPU fixture from before they existed).

use super::*;
use std::collections::BTreeMap;

/// What the section drew, as JSON in a <pre> (as `MEASURE` does).
const WHO: &str = r##"<script>
(function () {
  var all = function (q) { return Array.prototype.slice.call(document.querySelectorAll(q)); };
  var none = document.getElementById("who-none");
  var out = {
    status: document.body.dataset.status,
    errors: document.body.dataset.errors,
    pwned: document.body.dataset.pwned || null,
    markup: document.querySelectorAll("#who img, #who script, #who b").length,
    none: none ? none.textContent : null,
    table: !!document.getElementById("who-table"),
    callers: all("#who-table tr.caller").map(function (tr) {
      return { bytes: +tr.getAttribute("data-bytes"),
               cells: Array.prototype.map.call(tr.children, function (td) { return td.textContent; }) };
    }),
    stacks: all("#who .stack").map(function (s) {
      return { bytes: +s.getAttribute("data-bytes"), frames: s.querySelector(".frames").textContent.split("\n") };
    })
  };
  var pre = document.createElement("pre"); pre.id = "kvscope-measure";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();
</script>"##;

/// `report --html` of `report` with the probe appended; what it measured.
fn who_section(browser: &str, report: &Path, dir: &Path) -> Value {
    let page = html_of(report, dir, &[]);
    let html = std::fs::read_to_string(&page).unwrap();
    let probe = dir.join("probe.html");
    std::fs::write(&probe, html.replace("</body>", &format!("{WHO}\n</body>"))).unwrap();
    let (dom, log) = render_dom(browser, &probe, &dir.join("profile"));
    let m = measured(&dom);
    assert_eq!(m["status"], "rendered", "{log}");
    assert_eq!(m["errors"], "0", "{log}");
    m
}

/// who_app under the shim, stacks from 8 MiB: its exit report and the live
/// bytes it says each file asked for.
fn who_app(dir: &Path) -> (PathBuf, BTreeMap<String, u64>) {
    let r = run(
        "who_app",
        &[],
        &[("KVSCOPE_STACK_MIN", "8388608")],
        true,
        dir,
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let want = expectations(&r.stdout())
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("caller.")?.to_string(), v)))
        .collect();
    let exit = r.path("exit").to_path_buf();
    (exit, want)
}

#[test]
fn the_page_shows_who_allocated_the_live_memory() {
    let dir = scratch("html-who");
    let (exit, want) = who_app(&dir);
    assert_eq!(want["libwhoplug.so"], 10 << 20);
    assert_eq!(want["libwholib.so"], 8 << 20);
    let Some(browser) = chromium("the_page_shows_who_allocated_the_live_memory") else {
        return;
    };
    let m = who_section(&browser, &exit, &dir);
    assert!(m["none"].is_null() && m["table"] == true, "{m}");

    // One row per file, with its bytes (the number and as printed), largest first.
    let rows = m["callers"].as_array().unwrap();
    let files: Vec<&str> = rows
        .iter()
        .map(|r| r["cells"][0].as_str().unwrap())
        .collect();
    let got: BTreeMap<String, u64> = rows
        .iter()
        .map(|r| (r["cells"][0].as_str().unwrap().to_string(), u(&r["bytes"])))
        .collect();
    assert_eq!(got, want, "{rows:?}");
    assert_eq!(files.len(), want.len(), "one row per file: {rows:?}");
    for (file, printed) in [("libwhoplug.so", "10.0 MiB"), ("libwholib.so", "8.00 MiB")] {
        let row = rows.iter().find(|r| r["cells"][0] == file).unwrap();
        assert_eq!(row["cells"][4], printed, "{row}");
        assert_eq!(row["cells"][1], "who_lib_allocate", "its symbol: {row}");
    }
    let bytes: Vec<u64> = rows.iter().map(|r| u(&r["bytes"])).collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");

    // The one allocation of at least 8 MiB: its stack, the library first,
    // the program below it, none of the shim's own frames.
    let stacks = m["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    assert_eq!(u(&stacks[0]["bytes"]), 10 << 20);
    let frames: Vec<&str> = stacks[0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(frames[0], "libwhoplug.so!who_lib_allocate", "{frames:?}");
    let app = frames.iter().position(|f| f.starts_with("who_app"));
    assert!(app.is_some_and(|i| i > 0), "{frames:?}");
    assert!(
        !frames.iter().any(|f| f.contains("libkvscope")),
        "{frames:?}"
    );
}

/// File names and symbols come from the traced process: shown as text,
/// never run or parsed as markup, even past the page's own script element.
#[test]
fn file_names_and_symbols_are_shown_as_text() {
    let dir = scratch("html-who-escape");
    let (exit, _) = who_app(&dir);
    let evil_file = "lib<script>document.body.dataset.pwned='file'<!--<script><img src=x onerror=\"document.body.dataset.pwned='img'\">.so";
    let evil_symbol = "</script><script>document.body.dataset.pwned='symbol'</script><b>bold</b>";
    let mut rep = load(&exit);
    let mut renamed = 0;
    for c in rep["callers"].as_array_mut().unwrap() {
        if c["file"].as_str().unwrap().ends_with("/libwhoplug.so") {
            c["file"] = format!("/opt/x/{evil_file}").into();
            c["symbol"] = evil_symbol.into();
            renamed += 1;
        }
    }
    for t in rep["live"]["by_caller"].as_array_mut().unwrap() {
        if t["caller"] == "libwhoplug.so" {
            t["caller"] = evil_file.into();
            renamed += 1;
        }
    }
    assert!(renamed >= 2, "{rep}");
    let evil = dir.join("evil-exit.json");
    std::fs::write(&evil, serde_json::to_vec(&rep).unwrap()).unwrap();
    let Some(browser) = chromium("file_names_and_symbols_are_shown_as_text") else {
        return;
    };
    let m = who_section(&browser, &evil, &dir);
    let html = std::fs::read_to_string(dir.join("page.html")).unwrap();
    assert!(
        !html.contains("<script>document") && !html.contains("<img"),
        "the report's strings reach the page as data only"
    );
    assert!(m["pwned"].is_null(), "{m}");
    assert_eq!(m["markup"], 0, "{m}");
    let rows = m["callers"].as_array().unwrap();
    let row = rows.iter().find(|r| r["cells"][0] == evil_file);
    assert!(
        row.is_some_and(|r| r["cells"][1] == evil_symbol && u(&r["bytes"]) == 10 << 20),
        "{rows:?}"
    );
    assert_eq!(
        m["stacks"][0]["frames"][0],
        format!("{evil_file}!{evil_symbol}").as_str(),
        "{m}"
    );
}

/// A report without callers (the real-GPU fixtures predate them) says so
/// in one line instead of an empty table.
#[test]
fn a_report_without_callers_says_so_in_one_line() {
    let dir = scratch("html-who-none");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/h200/healthy/kvscope-exit.json");
    let rep = load(&fixture);
    assert!(
        rep["callers"].as_array().is_none_or(|c| c.is_empty()),
        "the fixture has no callers"
    );
    let Some(browser) = chromium("a_report_without_callers_says_so_in_one_line") else {
        return;
    };
    let m = who_section(&browser, &fixture, &dir);
    assert!(
        m["table"] == false && m["stacks"] == serde_json::json!([]),
        "{m}"
    );
    let note = m["none"].as_str().expect("the note");
    assert!(
        note.contains("no callers") && !note.contains('\n'),
        "{note}"
    );
}
