//! The HTML page of a report, rendered in headless Chromium: it must draw
//! without a console error. Skipped (loudly) where Chromium is not
//! installed, unless KVSCOPE_REQUIRE_CHROMIUM=1 (as .ci/run sets it).

mod common;
use common::*;
use std::process::Command;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {b}"))
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(String::from)
}

#[test]
fn the_html_report_renders_without_console_errors() {
    let dir = scratch("html");
    let r = run(
        "serve_sim",
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
        &[("KVSCOPE_SAMPLE_MS", "5")],
        true,
        &dir,
    );
    let exit = r
        .reports
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-exit.json"))
        .unwrap();
    let page = dir.join("page.html");
    let out = kvscope(&[
        "report",
        exit.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
        "--model",
        "llama-3.1-8b",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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

    let Some(browser) = chromium() else {
        assert!(
            std::env::var("KVSCOPE_REQUIRE_CHROMIUM").is_err(),
            "KVSCOPE_REQUIRE_CHROMIUM is set but no Chromium was found"
        );
        eprintln!("SKIPPED: no chromium on this machine (apt-get install chromium; .ci/run does)");
        return;
    };
    let profile = dir.join("profile");
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
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
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
