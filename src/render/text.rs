//! The human form of a check result.

use super::finding::view;
use crate::check::kind::Severity;
use crate::check::result::{CheckResult, UnknownMarker};
use crate::check::steps::Status;
use crate::units::{bytes, duration_ms};
use std::fmt::Write;

/// The sentence for a marker label the check did not understand.
pub fn unknown_marker(u: &UnknownMarker) -> String {
    format!(
        "{}: marker `{}` ({} time{}) is not in kvscope's vocabulary; kept as a phase name only (understood: load, profile, kv_cache, warmup, drain, serve / serving / ready / baseline, idle, `request <id> start tokens=N` / `request <id> done`, `request_start` / `request_end`)",
        u.process,
        u.label,
        u.count,
        if u.count == 1 { "" } else { "s" }
    )
}

pub fn render(r: &CheckResult) -> String {
    let mut o = String::new();
    for p in &r.processes {
        let cmd = p.cmdline.join(" ");
        let _ = writeln!(
            o,
            "{} on {}: {}",
            p.label,
            p.hostname.as_deref().unwrap_or("?"),
            if cmd.is_empty() { "?" } else { &cmd }
        );
        for d in &p.devices {
            let b = &d.breakdown;
            let total = b
                .total_bytes
                .map(|t| format!(" ({} total)", bytes(t)))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  device {}{total}: {} tracked live",
                d.device,
                bytes(b.tracked_bytes)
            );
            for part in &b.parts {
                let _ = writeln!(
                    o,
                    "    {:<26} {:>10}   {}",
                    part.category,
                    bytes(part.bytes),
                    part.rule
                );
            }
            if let (Some(act), Some(t)) = (b.peak_activations_bytes, b.peak_t_ms) {
                let _ = writeln!(o, "    at the peak ({} at {}): activations & temporaries {} (peak - weights - preallocated KV)", bytes(b.peak_bytes), duration_ms(t), bytes(act));
            }
            for k in &d.kv_cache {
                let _ = writeln!(
                    o,
                    "    KV cache: {} tensors x {} = {} ({} tokens), {}",
                    k.tensors,
                    bytes(k.tensor_bytes),
                    bytes(k.bytes),
                    k.tokens,
                    k.layout
                );
            }
            for s in &d.steps {
                let status = match s.status {
                    Status::Ok => "ok",
                    Status::Problem => "PROBLEM",
                    Status::Skipped => "skipped",
                };
                let _ = writeln!(
                    o,
                    "    step {} {:<34} {:<8} {}",
                    s.number, s.name, status, s.detail
                );
            }
        }
    }
    if !r.findings.is_empty() {
        let _ = writeln!(o, "findings:");
    }
    for f in r.findings.iter().map(view) {
        let where_ = match (f.process, f.device) {
            (Some(p), Some(d)) => format!(" ({p}, device {d})"),
            (Some(p), None) => format!(" ({p})"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  {} {}{where_}: {}",
            f.severity.label(),
            f.name,
            f.summary
        );
        for e in &f.evidence {
            let _ = writeln!(o, "      - {e}");
        }
        if !f.next.is_empty() && f.severity > Severity::Info {
            let _ = writeln!(o, "      next: {}", f.next);
        }
    }
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    for u in &r.unknown_markers {
        let _ = writeln!(o, "warning: {}", unknown_marker(u));
    }
    let _ = writeln!(
        o,
        "summary: {} critical, {} warning{}, {} info{} -> exit status {}",
        r.critical,
        r.warnings,
        if r.warnings == 1 { "" } else { "s" },
        r.info,
        r.model
            .as_ref()
            .map(|m| format!(" (checked against {m})"))
            .unwrap_or_default(),
        r.exit_status
    );
    o
}
