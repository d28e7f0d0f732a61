//! Reports through the checks: grouped into runs (`runs.rs`: the reports of
//! each process merged, processes that are the ranks of one job together),
//! and each run's devices through their context, detectors and steps, and
//! the balance of its ranks.

use super::context::{DeviceCtx, ModelCtx, Thresholds};
use super::detect::{self, balance::balance};
use super::finding::{Finding, RankLoad};
use super::kind::Severity;
use super::result::{
    CheckResult, DeviceResult, KvSummary, ProcessResult, RunResult, UnknownMarker,
};
use super::{markers, runs, steps};
use crate::report::Report;
use crate::units::Bytes;

fn label(r: &Report) -> String {
    match r.process.rank() {
        Some(rank) => format!("rank {rank} (pid {})", r.process.pid),
        None => format!("pid {}", r.process.pid),
    }
}

/// Reports of one run or of several: grouped into runs (`runs.rs`), each
/// checked on its own, side by side in one result. With one run the result
/// is what it always was (its `runs` holds that one).
pub fn check(
    reports: Vec<(String, Report)>,
    model: Option<&ModelCtx>,
    thresholds: Thresholds,
    fail_on: Severity,
) -> CheckResult {
    let runs = runs::group(reports);
    let several = runs.len() > 1;
    let mut out = CheckResult {
        schema: "kvscope.check.v1",
        model: model.map(|m| m.model.name.clone()),
        critical: 0,
        warnings: 0,
        info: 0,
        runs: Vec::new(),
        processes: Vec::new(),
        findings: Vec::new(),
        notes: Vec::new(),
        unknown_markers: Vec::new(),
        exit_status: 0,
        engine_plan: Vec::new(),
    };
    if model.is_none() {
        out.notes.push("no --model: the KV cache is recognised by shape only (equal tensors per layer made before serving) and weights are not compared; steps 3 and 4 are skipped".into());
    }
    if several {
        out.notes.push(format!(
            "{} runs, checked separately: their processes are not the ranks of one job (see README, \"Several reports\")",
            runs.len()
        ));
    }
    for (i, run) in runs.into_iter().enumerate() {
        let label = format!("run {i}");
        // The ranks of one job set the tensor-parallel size when it was not given.
        let n = run.processes.len() as u64;
        let guessed = model
            .filter(|m| run.ranks && !m.par_given)
            .map(|m| m.with_tp(run.world_size.map_or(n, u64::from).max(n)));
        if let Some(g) = &guessed {
            out.notes.push(format!(
                "{}{n} processes checked as the tensor-parallel ranks of one job (--tp {}); give --tp / --pp otherwise",
                if several { format!("{label}: ") } else { String::new() },
                g.par.tp
            ));
        }
        let m = guessed.as_ref().or(model);
        let cmdline = run
            .processes
            .first()
            .map(|(_, r)| r.process.cmdline.clone())
            .unwrap_or_default();
        let mut r = check_run(run.processes, m, thresholds, i);
        let n = |s| r.findings.iter().filter(|f| f.severity == s).count();
        out.runs.push(RunResult {
            label,
            run_id: run.run_id,
            ranks: run.ranks,
            processes: r.processes.iter().map(|p| p.label.clone()).collect(),
            cmdline,
            tp: m.map(|m| m.par.tp),
            critical: n(Severity::Critical),
            warnings: n(Severity::Warning),
            info: n(Severity::Info),
            exit_status: i32::from(r.findings.iter().any(|f| f.severity >= fail_on)),
        });
        out.processes.append(&mut r.processes);
        out.findings.append(&mut r.findings);
        out.unknown_markers.append(&mut r.unknown_markers);
    }
    // Most severe first; within a severity, runs in order.
    out.findings
        .sort_by_key(|f| (std::cmp::Reverse(f.severity), f.run));
    let n = |s| out.findings.iter().filter(|f| f.severity == s).count();
    (out.critical, out.warnings, out.info) = (
        n(Severity::Critical),
        n(Severity::Warning),
        n(Severity::Info),
    );
    out.exit_status = out.runs.iter().map(|r| r.exit_status).max().unwrap_or(0);
    out
}

struct RunChecked {
    processes: Vec<ProcessResult>,
    findings: Vec<Finding>,
    unknown_markers: Vec<UnknownMarker>,
}

/// One run's processes through the checks: each device's context,
/// detectors and steps, and the balance of its ranks.
fn check_run(
    merged: Vec<runs::Proc>,
    model: Option<&ModelCtx>,
    thresholds: Thresholds,
    run: usize,
) -> RunChecked {
    let mut processes = Vec::new();
    let mut findings = Vec::new();
    let mut capacities = Vec::new();
    let mut unknown_markers = Vec::new();
    for (names, r) in &merged {
        let phases = markers::Phases::of(r);
        let label = label(r);
        unknown_markers.extend(phases.unknown.iter().map(|(l, n)| UnknownMarker {
            process: label.clone(),
            label: l.clone(),
            count: *n,
        }));
        let mut devices = Vec::new();
        for d in r
            .devices
            .iter()
            .filter(|d| d.memory.allocs > 0 || d.memory.failures > 0)
        {
            let c = DeviceCtx::new(r, d.device, &phases, model, thresholds);
            let mut found = detect::run(&c);
            let steps = steps::run(&c, &found);
            for f in &mut found {
                f.process = Some(label.clone());
            }
            capacities.push(RankLoad {
                label: label.clone(),
                kv_tokens: c.kv.capacity_tokens().unwrap_or(0),
                peak: Bytes(c.breakdown.peak_bytes),
            });
            devices.push(DeviceResult {
                device: d.device,
                kv_cache: c
                    .kv
                    .groups
                    .iter()
                    .map(|g| KvSummary {
                        layout: g.layout.name(),
                        tensors: g.tensors,
                        tensor_bytes: g.tensor_bytes,
                        bytes: g.bytes(),
                        tokens: g.tokens,
                    })
                    .collect(),
                breakdown: c.breakdown,
                steps,
            });
            findings.extend(found);
        }
        processes.push(ProcessResult {
            run,
            label,
            pid: r.process.pid,
            hostname: r.process.hostname.clone(),
            cmdline: r.process.cmdline.clone(),
            reports: names.clone(),
            devices,
        });
    }
    findings.extend(balance(&capacities));
    for f in &mut findings {
        f.run = run;
    }
    RunChecked {
        processes,
        findings,
        unknown_markers,
    }
}
