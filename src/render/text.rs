//! The human form of a check result.

use super::finding::view;
use crate::check::finding::Finding;
use crate::check::kind::Severity;
use crate::check::result::{CheckResult, ProcessResult, RunResult, UnknownMarker};
use crate::check::steps::Status;
use crate::units::{bytes, count, duration_ms};
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

fn process(o: &mut String, p: &ProcessResult) {
    let cmd = p.cmdline.join(" ");
    let _ = writeln!(
        o,
        "{} on {}: {}",
        p.label,
        p.hostname.as_deref().unwrap_or("?"),
        if cmd.is_empty() { "?" } else { &cmd }
    );
    // Several reports of one process: say which one speaks for it.
    if let [others @ .., judged] = p.reports.as_slice() {
        if !others.is_empty() {
            let _ = writeln!(
                o,
                "  judged from {judged} (the final report, else the newest dump or checkpoint; {} other report{} of this process)",
                others.len(),
                if others.len() == 1 { "" } else { "s" }
            );
        }
    }
    for d in &p.devices {
        let b = &d.breakdown;
        let total = b
            .total_bytes
            .map(|t| format!(" ({} total)", bytes(t)))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  device {}{total}: {} {}",
            d.device,
            bytes(b.tracked_bytes),
            if d.device_level {
                "held by the process (NVML, device level)"
            } else {
                "tracked live"
            }
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
        if !b.by_library.is_empty() {
            let _ = writeln!(o, "    by the library that called CUDA:");
            for l in &b.by_library {
                let files = l.files.join(", ");
                let _ = writeln!(
                    o,
                    "      {:<24} {:>10} in {:>6} x{}{}",
                    l.library,
                    bytes(l.bytes),
                    count(l.count),
                    if l.framework {
                        ""
                    } else {
                        "   outside the framework's allocator"
                    },
                    if files == l.library {
                        String::new()
                    } else {
                        format!(" ({files})")
                    }
                );
            }
            let _ = writeln!(o, "      rule: {}", b.library_rule);
        }
        if let (Some(act), Some(t)) = (b.peak_activations_bytes, b.peak_t_ms) {
            let _ = writeln!(o, "    at the peak ({} at {}): activations & temporaries {} (peak - weights - preallocated KV)", bytes(b.peak_bytes), duration_ms(t), bytes(act));
        }
        for k in &d.kv_cache {
            let _ = writeln!(
                o,
                "    KV cache: {} tensors x {} = {} ({}), {}",
                k.tensors,
                bytes(k.tensor_bytes),
                bytes(k.bytes),
                if k.tokens == 0 {
                    "tokens known only with --model".to_string()
                } else {
                    format!("{} tokens", k.tokens)
                },
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

fn findings<'a>(o: &mut String, found: impl Iterator<Item = &'a Finding>, colour: bool) {
    let mut first = true;
    for f in found.map(view) {
        if first {
            let _ = writeln!(o, "findings:");
            first = false;
        }
        let where_ = match (f.process, f.device) {
            (Some(p), Some(d)) => format!(" ({p}, device {d})"),
            (Some(p), None) => format!(" ({p})"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  {} {}{where_}: {}",
            severity(f.severity, colour),
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
}

/// A severity's label, coloured for a terminal: red, yellow, dim.
fn severity(s: Severity, colour: bool) -> String {
    if !colour {
        return s.label().to_string();
    }
    let code = match s {
        Severity::Critical => "1;31",
        Severity::Warning => "1;33",
        Severity::Info => "2",
    };
    format!("\x1b[{code}m{}\x1b[0m", s.label())
}

fn counts(critical: usize, warnings: usize, info: usize) -> String {
    format!(
        "{critical} critical, {warnings} warning{}, {info} info",
        if warnings == 1 { "" } else { "s" }
    )
}

/// One line per run: what ran, and what the check found in it.
fn run_line(o: &mut String, run: &RunResult) {
    let cmd = run.cmdline.join(" ");
    let _ = writeln!(
        o,
        "  {}: {}{} ({}): {} -> exit status {}",
        run.label,
        run.processes.join(", "),
        if run.ranks { ", ranks of one job" } else { "" },
        if cmd.is_empty() { "?" } else { &cmd },
        counts(run.critical, run.warnings, run.info),
        run.exit_status
    );
}

pub fn render(r: &CheckResult) -> String {
    render_with(r, false)
}

/// `colour`: severity labels in colour (a terminal that wants it).
pub fn render_with(r: &CheckResult, colour: bool) -> String {
    let mut o = String::new();
    if r.runs.len() > 1 {
        let _ = writeln!(o, "{} runs, checked separately:", r.runs.len());
        for run in &r.runs {
            run_line(&mut o, run);
        }
        for (i, run) in r.runs.iter().enumerate() {
            let _ = writeln!(o, "\n== {} ==", run.label);
            for p in r.processes.iter().filter(|p| p.run == i) {
                process(&mut o, p);
            }
            findings(&mut o, r.findings.iter().filter(|f| f.run == i), colour);
        }
        let _ = writeln!(o);
    } else {
        for p in &r.processes {
            process(&mut o, p);
        }
        findings(&mut o, r.findings.iter(), colour);
    }
    super::plan::text(&mut o, &r.engine_plan);
    for n in &r.notes {
        let _ = writeln!(o, "note: {n}");
    }
    for u in &r.unknown_markers {
        let _ = writeln!(o, "warning: {}", unknown_marker(u));
    }
    let _ = writeln!(
        o,
        "summary: {}{}{} -> exit status {}",
        counts(r.critical, r.warnings, r.info),
        if r.runs.len() > 1 {
            format!(" in {} runs", r.runs.len())
        } else {
            String::new()
        },
        r.model
            .as_ref()
            .map(|m| format!(" (checked against {m})"))
            .unwrap_or_default(),
        r.exit_status
    );
    o
}

#[cfg(test)]
mod tests {
    use crate::check::context::Thresholds;
    use crate::check::job::check;
    use crate::check::kind::Severity;
    use crate::check::testkit::*;

    /// Severity labels are coloured only when asked (a terminal without NO_COLOR).
    #[test]
    fn severity_labels_are_coloured_only_when_asked() {
        let r = ReportBuilder::new()
            .total(10 * GIB)
            .alloc(GIB)
            .peak(19 * GIB / 2)
            .build();
        let result = check(
            vec![("a".into(), r)],
            None,
            Thresholds::default(),
            Severity::Critical,
        );
        let plain = super::render(&result);
        assert!(plain.contains("  CRITICAL utilization") && !plain.contains('\x1b'));
        let coloured = super::render_with(&result, true);
        assert!(
            coloured.contains("\x1b[1;31mCRITICAL\x1b[0m utilization"),
            "{coloured}"
        );
    }
}
