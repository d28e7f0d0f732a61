//! The deploy files against the real tools: `promtool check rules`, and a
//! Prometheus server on loopback scraping the exporter every second, asked
//! through its HTTP API for the series and for every expression of the
//! rules and the dashboard. Needs the Debian package `prometheus`
//! (required when KVSCOPE_REQUIRE_PROMETHEUS=1, as `.ci/run` sets).

mod common;
mod live;

use live::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn rules_file() -> std::path::PathBuf {
    repo().join("deploy/prometheus/kvscope-rules.yml")
}

#[test]
fn promtool_accepts_the_rules() {
    let Some(promtool) = prometheus_tool("promtool") else {
        return;
    };
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(rules_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every PromQL expression of the dashboard, its variables replaced.
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/kvscope.json")).unwrap();
    let d: Value = serde_json::from_str(&text).unwrap();
    d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$Hostname", ".*")
                .replace("$UUID", ".*")
        })
        .collect()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/api/v1/query` on the server; its JSON answer (None while it starts).
fn try_query(addr: std::net::SocketAddr, q: &str) -> Option<Value> {
    let (status, body) = get(addr, &format!("/api/v1/query?query={}", encode(q)), None);
    matches!(status, 200 | 400 | 422)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

fn query(addr: std::net::SocketAddr, q: &str) -> Value {
    try_query(addr, q).unwrap_or_else(|| panic!("no answer to {q}"))
}

#[test]
fn prometheus_scrapes_the_exporter() {
    let Some(prometheus) = prometheus_tool("prometheus") else {
        return;
    };
    let dir = common::scratch("server");
    let state = dir.join("state");
    let p = holder(&state, &dir, &[("RANK", "0"), ("KVSCOPE_RUN_ID", "job-1")]);
    wait_for("the state file", Duration::from_secs(30), || {
        state_file(&state, p.pid())
    });
    let (_e, exporter_addr) = exporter(&state, &[]);
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: kvscope\n    static_configs:\n      - targets: ['{exporter_addr}']\n",
            rules_file().display()
        ),
    )
    .unwrap();
    let server = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let _server = Guard(server);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pid = p.pid().to_string();
    let log = || std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let q = format!("kvscope_live_bytes{{pid=\"{pid}\",space=\"device\"}}");
    let series = wait_for("the series in Prometheus", Duration::from_secs(90), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        let v = try_query(addr, &q)?;
        let r = v["data"]["result"].as_array()?.first()?.clone();
        Some(r)
    });
    assert_eq!(series["value"][1], HELD.to_string(), "{series}\n{}", log());
    assert_eq!(
        series["metric"]["UUID"],
        "GPU-6b767369-6d00-0000-0000-000000000000"
    );
    assert_eq!(series["metric"]["cuda_device"], "0");
    // The dashboard's expressions are valid PromQL; the rank join finds the rank.
    for e in dashboard_exprs() {
        let v = query(addr, &e);
        assert_eq!(v["status"], "success", "{e}: {v}");
    }
    let per_rank = dashboard_exprs()
        .into_iter()
        .find(|e| e.starts_with("sum by (run_id, rank)"))
        .expect("the per-rank panel");
    let ranks = query(addr, &per_rank);
    let found = ranks["data"]["result"].as_array().unwrap().iter().any(|r| {
        r["metric"]["rank"] == "0"
            && r["metric"]["run_id"] == "job-1"
            && r["value"][1].as_str() == Some(HELD.to_string().as_str())
    });
    assert!(found, "per-rank join: {ranks}");
    // The rules were loaded and are evaluated without error.
    let rules = wait_for("the rules evaluated", Duration::from_secs(30), || {
        let (_, body) = get(addr, "/api/v1/rules", None);
        let v: Value = serde_json::from_str(&body).ok()?;
        let groups = v["data"]["groups"].as_array()?.clone();
        let evaluated = groups.iter().all(|g| {
            g["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        (groups.len() == 2 && evaluated).then_some(groups)
    });
    for g in &rules {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(r["health"], "ok", "{r}");
        }
    }
}
