//! One job's reports through the checks: the reports of each process merged,
//! each device's context, detectors and steps, and the balance of the
//! processes (one per tensor-parallel rank).

use super::context::{DeviceCtx, ModelCtx, Thresholds};
use super::detect::{self, balance::balance};
use super::finding::RankLoad;
use super::kind::Severity;
use super::result::{CheckResult, DeviceResult, KvSummary, ProcessResult, UnknownMarker};
use super::{markers, steps};
use crate::report::{Reason, Report};
use crate::units::Bytes;

/// Reports of one process (an exit report and its OOM post-mortem, say) become one.
fn merge(mut group: Vec<(String, Report)>) -> (Vec<String>, Report) {
    let rank = |r: &Report| match r.reason {
        Some(Reason::Exit) | Some(Reason::Signal) => 3,
        Some(Reason::Checkpoint) => 2,
        Some(Reason::Dump) => 1,
        _ => 0,
    };
    group.sort_by(|a, b| {
        rank(&a.1)
            .cmp(&rank(&b.1))
            .then(a.1.t_ms.total_cmp(&b.1.t_ms))
    });
    let names = group.iter().map(|(n, _)| n.clone()).collect();
    let oom = group.iter().find_map(|(_, r)| r.oom.clone());
    let (_, mut main) = group.pop().unwrap_or_default();
    if main.oom.is_none() {
        main.oom = oom;
    }
    (names, main)
}

fn label(r: &Report) -> String {
    match r.process.rank() {
        Some(rank) => format!("rank {rank} (pid {})", r.process.pid),
        None => format!("pid {}", r.process.pid),
    }
}

pub fn check(
    reports: Vec<(String, Report)>,
    model: Option<&ModelCtx>,
    thresholds: Thresholds,
    fail_on: Severity,
) -> CheckResult {
    let mut groups: Vec<Vec<(String, Report)>> = Vec::new();
    for (name, r) in reports {
        let key = (r.process.hostname.clone(), r.process.pid);
        match groups.iter_mut().find(|g| {
            g.first()
                .is_some_and(|(_, x)| (x.process.hostname.clone(), x.process.pid) == key)
        }) {
            Some(g) => g.push((name, r)),
            None => groups.push(vec![(name, r)]),
        }
    }
    let merged: Vec<(Vec<String>, Report)> = groups.into_iter().map(merge).collect();

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
            label,
            pid: r.process.pid,
            hostname: r.process.hostname.clone(),
            cmdline: r.process.cmdline.clone(),
            reports: names.clone(),
            devices,
        });
    }
    findings.extend(balance(&capacities));
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let n = |s| findings.iter().filter(|f| f.severity == s).count();
    let exit_status = if findings.iter().any(|f| f.severity >= fail_on) {
        1
    } else {
        0
    };
    let mut notes = Vec::new();
    if model.is_none() {
        notes.push("no --model: the KV cache is not recognised and weights are not compared; steps 3 and 4 are skipped".into());
    }
    CheckResult {
        schema: "kvscope.check.v1",
        model: model.map(|m| m.model.name.clone()),
        critical: n(Severity::Critical),
        warnings: n(Severity::Warning),
        info: n(Severity::Info),
        processes,
        findings,
        notes,
        unknown_markers,
        exit_status,
    }
}
