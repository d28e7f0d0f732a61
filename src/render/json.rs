//! The machine form of a check result: one JSON object, `kvscope.check.v1`.
//! Findings appear as `finding::FindingView`s: name, severity, where, the
//! summary, evidence and advice, and their numbers.

use super::finding::{view, FindingView};
use crate::check::result::{CheckResult, ProcessResult, RunResult};
use serde::Serialize;

/// The fields in the order `kvscope.check.v1` has always had them.
#[derive(Serialize)]
struct CheckJson<'a> {
    schema: &'static str,
    model: &'a Option<String>,
    processes: &'a [ProcessResult],
    findings: Vec<FindingView<'a>>,
    critical: usize,
    warnings: usize,
    info: usize,
    notes: Vec<String>,
    exit_status: i32,
    /// The runs the reports came from (one for a single run), each checked
    /// on its own; processes and findings name theirs by index (`run`).
    runs: &'a [RunResult],
    /// The engine's logged plan against each device (`--engine-log`), with
    /// `null` for a figure not logged or not measured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    engine_plan: Vec<super::plan::TableJson<'a>>,
    /// `kvscope diagnose`: what it sent and measured (absent from `check`).
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnose: Option<serde_json::Value>,
}

pub fn render(r: &CheckResult) -> Result<String, String> {
    render_with(r, None)
}

/// The same object with a `diagnose` section after the check's own fields.
pub fn render_with(r: &CheckResult, diagnose: Option<serde_json::Value>) -> Result<String, String> {
    let json = CheckJson {
        schema: r.schema,
        model: &r.model,
        processes: &r.processes,
        findings: r.findings.iter().map(view).collect(),
        critical: r.critical,
        warnings: r.warnings,
        info: r.info,
        notes: r
            .notes
            .iter()
            .cloned()
            .chain(r.unknown_markers.iter().map(super::text::unknown_marker))
            .collect(),
        exit_status: r.exit_status,
        runs: &r.runs,
        engine_plan: super::plan::json(&r.engine_plan),
        diagnose,
    };
    serde_json::to_string_pretty(&json).map_err(|e| e.to_string())
}
