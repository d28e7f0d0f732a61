//! The HTML page of a report, rendered in headless Chromium: it must draw
//! without a console error, and what it draws is read back from the DOM
//! (axis range, labels and their boxes, series, table rows). Without
//! Chromium the tests say so on stderr (past cargo's capture) and pass,
//! unless KVSCOPE_REQUIRE_CHROMIUM=1 (as .ci/run sets it): then they fail.

mod common;
use common::*;
#[path = "html/who.rs"]
mod who;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// KVSCOPE_CHROMIUM (a path or a name), else the first browser on PATH;
/// None after a visible line when there is none and none is required.
fn chromium(test: &str) -> Option<String> {
    let named = std::env::var("KVSCOPE_CHROMIUM").ok();
    let candidates: Vec<String> = match &named {
        Some(n) => vec![n.clone()],
        None => ["chromium", "chromium-browser", "google-chrome"]
            .map(String::from)
            .to_vec(),
    };
    let found = candidates.into_iter().find(|b| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v '{b}'"))
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        let required = std::env::var("KVSCOPE_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{test}: KVSCOPE_REQUIRE_CHROMIUM=1 but no Chromium was found ({})",
            named
                .as_deref()
                .unwrap_or("chromium, chromium-browser, google-chrome")
        );
        // Straight to the descriptor: cargo test captures eprintln! of a
        // passing test, and a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no Chromium on this machine (apt-get install chromium; .ci/run sets KVSCOPE_REQUIRE_CHROMIUM=1)"
        );
    }
    found
}

/// The page's DOM after its scripts ran, and Chromium's log.
fn render_dom(browser: &str, page: &Path, profile: &Path) -> (String, String) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2000",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A serve_sim report, and its page (checked against llama-3.1-8b).
fn page_of(dir: &Path, args: &[&str]) -> (PathBuf, PathBuf) {
    let r = run("serve_sim", args, &[("KVSCOPE_SAMPLE_MS", "5")], true, dir);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let exit = r.path("exit").to_path_buf();
    let page = html_of(&exit, dir, &["--model", "llama-3.1-8b"]);
    (exit, page)
}

/// `kvscope report REPORT --html DIR/page.html` with `args`: the page.
fn html_of(report: &Path, dir: &Path, args: &[&str]) -> PathBuf {
    let page = dir.join("page.html");
    let mut all = vec![
        "report",
        report.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    common::assert_ok(&kvscope(&all));
    page
}

#[test]
fn the_html_report_renders_without_console_errors() {
    let dir = scratch("html");
    let (_, page) = page_of(
        &dir,
        &[
            "--pattern",
            "hf",
            "--step-ms",
            "1",
            "--gen",
            "64",
            "--leak",
            "256MiB",
            "--idle-ms",
            "250",
        ],
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "self-contained: no network"
    );
    assert!(
        html.contains("leak_per_request"),
        "the findings are on the page"
    );

    let Some(browser) = chromium("the_html_report_renders_without_console_errors") else {
        return;
    };
    let (dom, log) = render_dom(&browser, &page, &dir.join("profile"));
    assert!(
        dom.contains("data-status=\"rendered\""),
        "the script ran to the end:\n{log}"
    );
    assert!(dom.contains("data-errors=\"0\""), "no script error:\n{log}");
    let console_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("Error")))
        .collect();
    assert!(
        console_errors.is_empty(),
        "console errors: {console_errors:?}"
    );
    assert!(dom.contains("<polyline"), "the timeline is drawn");
    assert!(dom.contains("leak_per_request"));
}

/// Appended to a copy of the page: what was drawn, measured by the browser
/// (boxes in CSS pixels), as JSON in a <pre>.
const MEASURE: &str = r##"<script>
(function () {
  function box(e) { var r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
  function own(e) { return e.firstChild ? e.firstChild.nodeValue : ""; }
  var all = function (q) { return Array.prototype.slice.call(document.querySelectorAll(q)); };
  var out = {
    status: document.body.dataset.status,
    errors: document.body.dataset.errors,
    svgs: all("svg.timeline").map(function (s) {
      return { ymax: +s.getAttribute("data-ymax"), datamax: +s.getAttribute("data-datamax"),
               ticks: Array.prototype.map.call(s.querySelectorAll(".ytick"), own) };
    }),
    markers: all(".marker-label").map(function (t) { return { marker: +t.getAttribute("data-marker"), text: own(t), box: box(t) }; }),
    bands: all(".band-label").map(function (t) { return { request: t.getAttribute("data-request"), text: own(t), box: box(t) }; }),
    series: all("svg.timeline polyline[data-series]").map(function (p) {
      return { key: p.getAttribute("data-series"), width: +p.getAttribute("stroke-width"),
               dash: p.getAttribute("stroke-dasharray"), opacity: p.getAttribute("stroke-opacity") };
    }),
    rows: all("#largest-table tr.group").map(function (tr) {
      return Array.prototype.map.call(tr.children, function (td) { return td.textContent; });
    })
  };
  var pre = document.createElement("pre"); pre.id = "kvscope-measure";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();
</script>"##;

fn measured(dom: &str) -> Value {
    let open = "<pre id=\"kvscope-measure\">";
    let start = dom.find(open).expect("the measure ran") + open.len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let text = dom[start..end]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn overlap(a: &Value, b: &Value) -> f64 {
    let f = |v: &Value, i: usize| v[i].as_f64().unwrap();
    let w = f(a, 2).min(f(b, 2)) - f(a, 0).max(f(b, 0));
    let h = f(a, 3).min(f(b, 3)) - f(a, 1).max(f(b, 1));
    if w > 0.0 && h > 0.0 {
        w * h
    } else {
        0.0
    }
}

/// The timeline shows the problem: the axis scaled to the data, a label
/// for every marker and a labelled band for every request (four markers
/// at t≈0 and four requests at once here), none over another; live drawn
/// over reserved, unlike it; the allocation table grouped with counts.
#[test]
fn the_timeline_labels_every_marker_and_request_without_overlap() {
    let dir = scratch("html-timeline");
    let (exit, page) = page_of(
        &dir,
        &[
            "--pattern",
            "vllm",
            "--requests",
            "8",
            "--concurrency",
            "4",
            "--step-ms",
            "2",
            "--leak",
            "64MiB",
        ],
    );
    let Some(browser) = chromium("the_timeline_labels_every_marker_and_request_without_overlap")
    else {
        return;
    };
    let html = std::fs::read_to_string(&page).unwrap();
    let probe = dir.join("probe.html");
    std::fs::write(
        &probe,
        html.replace("</body>", &format!("{MEASURE}\n</body>")),
    )
    .unwrap();
    let (dom, log) = render_dom(&browser, &probe, &dir.join("profile"));
    let m = measured(&dom);
    assert_eq!(m["status"], "rendered", "{log}");
    assert_eq!(m["errors"], "0", "{log}");
    let report = load(&exit);

    // The axis: from the data (the device total only when near it).
    let max = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["devices"].as_array().unwrap())
        .flat_map(|d| {
            [
                "live_bytes",
                "reserved_bytes",
                "device_used_bytes",
                "max_live_bytes",
            ]
            .map(|k| d[k].as_f64().unwrap_or(0.0))
        })
        .fold(0.0, f64::max);
    let svg = &m["svgs"][0];
    assert_eq!(svg["datamax"].as_f64().unwrap(), max, "{svg}");
    let ymax = svg["ymax"].as_f64().unwrap();
    assert!(
        ymax >= max && ymax <= 1.6 * max,
        "axis to {ymax} for data to {max}"
    );
    let ticks = svg["ticks"].as_array().unwrap();
    assert!((3..=11).contains(&ticks.len()), "{svg}");
    assert_eq!(ticks[0], "0 B", "{svg}");

    // One label per marker; one labelled band per request.
    let markers = report["markers"].as_array().unwrap();
    let mut requests = std::collections::BTreeSet::new();
    for (i, mk) in markers.iter().enumerate() {
        let label = mk["label"].as_str().unwrap();
        let words: Vec<&str> = label.split(' ').collect();
        if words.len() >= 3 && words[0] == "request" && matches!(words[2], "start" | "done") {
            requests.insert(words[1].to_string());
            continue;
        }
        let found: Vec<&Value> = m["markers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["marker"] == i)
            .collect();
        assert_eq!(found.len(), 1, "marker {i} ({label}): {found:?}");
        assert_eq!(found[0]["text"], label);
    }
    assert!(markers.len() >= 4 + 16, "{markers:?}");
    assert_eq!(requests.len(), 8);
    for id in &requests {
        let found: Vec<&Value> = m["bands"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["request"] == id.as_str())
            .collect();
        assert_eq!(found.len(), 1, "request {id}: {found:?}");
        assert_eq!(found[0]["text"], format!("request {id}"));
    }
    let labels: Vec<&Value> = m["markers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(m["bands"].as_array().unwrap())
        .collect();
    for (i, a) in labels.iter().enumerate() {
        let b = &a["box"];
        assert!(b[2].as_f64() > b[0].as_f64(), "drawn with a width: {a}");
        for c in &labels[i + 1..] {
            assert!(
                overlap(b, &c["box"]) < 0.5,
                "labels overlap: {} and {}",
                a["text"],
                c["text"]
            );
        }
    }

    // Live over reserved, and not alike.
    let series = m["series"].as_array().unwrap();
    let at = |k: &str| series.iter().position(|s| s["key"] == k);
    let (live, reserved) = (at("live").unwrap(), at("reserved").unwrap());
    assert!(live > reserved, "live is drawn last: {series:?}");
    assert!(
        series[reserved]["width"].as_f64() > series[live]["width"].as_f64()
            && series[reserved]["opacity"].is_string(),
        "reserved wide and pale under live: {series:?}"
    );

    // The table: alike allocations on one row, with their count.
    let rows = m["rows"].as_array().unwrap();
    let keys: std::collections::BTreeSet<String> = rows
        .iter()
        .map(|r| format!("{} {} {} {}", r[1], r[3], r[4], r[5]))
        .collect();
    assert_eq!(keys.len(), rows.len(), "one row per kind: {rows:?}");
    assert!(
        rows.iter()
            .any(|r| r[0] == "32 \u{d7}" && r[1] == "1.72 GiB" && r[5] == "kv_cache"),
        "the 32 KV cache tensors on one row: {rows:?}"
    );
}

/// `report --html --engine-log`: the engine's plan as a table on the page,
/// "not logged" for what the log does not say, drawn without script errors.
#[test]
fn the_html_report_shows_the_engine_plan_table() {
    let dir = scratch("html-engine");
    let r = run("serve_sim", &["--max-model-len", "4096"], &[], true, &dir);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let exit = r.path("exit").to_path_buf();
    let tokens: u64 = figures(&r.stdout())["kv_capacity_tokens"].parse().unwrap();
    // TGI's router line (router/src/server.rs, TGI 2.x), half the run's tokens.
    let log = dir.join("tgi.log");
    std::fs::write(
        &log,
        format!("INFO text_generation_router::server: router/src/server.rs:1651: Setting max batch total tokens to {}\n", tokens / 2),
    )
    .unwrap();
    let page = html_of(
        &exit,
        &dir,
        &[
            "--model",
            "llama-3.1-8b",
            "--engine-log",
            log.to_str().unwrap(),
        ],
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("engine_plan_mismatch") && html.contains("\"engine_plan\""));
    let Some(browser) = chromium("the_html_report_shows_the_engine_plan_table") else {
        return;
    };
    let (dom, log) = render_dom(&browser, &page, &dir.join("profile"));
    assert!(dom.contains("data-status=\"rendered\""), "{log}");
    assert!(dom.contains("data-errors=\"0\""), "{log}");
    assert!(dom.contains("TGI's plan vs the trace"), "{dom}");
    assert!(dom.contains("not logged") && dom.contains(">OFF<"), "{dom}");
}
