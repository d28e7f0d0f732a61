//! `kvscope report FILE --html OUT.html`: one self-contained page (no
//! network, no external script) with the memory timeline and its markers,
//! the breakdown, the findings and who allocated the live memory.

use super::finding::{view, FindingView};
use super::who;
use crate::check::breakdown::Part;
use crate::check::result::CheckResult;
use crate::report::Report;
use serde::Serialize;

const TEMPLATE: &str = include_str!("report.html");

/// Live allocations alike (size, api, device, phase), with their count.
#[derive(Serialize)]
struct Row {
    count: u64,
    size: u64,
    /// The size as printed (`~` where the group's sizes differ a little).
    size_text: String,
    total: u64,
    api: &'static str,
    device: u32,
    phase: String,
    made_at: String,
}

#[derive(Serialize)]
struct DevicePage<'a> {
    device: u32,
    total: Option<u64>,
    /// [t_ms, live, reserved, device used, max live, PyTorch allocated,
    /// PyTorch reserved]; -1 where unknown.
    samples: Vec<[f64; 7]>,
    parts: &'a [Part],
}

#[derive(Serialize)]
struct Page<'a> {
    title: String,
    meta: String,
    t_ms: f64,
    devices: Vec<DevicePage<'a>>,
    markers: &'a [crate::report::Marker],
    findings: Vec<FindingView<'a>>,
    largest: Vec<Row>,
    /// Live allocations the report lists, and all of them.
    listed: usize,
    live_count: u64,
    /// The engine's logged plan against the trace (`--engine-log`).
    engine_plan: Vec<super::plan::TableJson<'a>>,
    who: Who<'a>,
}

/// Who allocated the live memory (`who`): callers and stacks.
#[derive(Serialize)]
struct Who<'a> {
    /// The report has call sites (false: older reports, or a shim built
    /// without caller capture; the page says so in one line).
    known: bool,
    callers: Vec<who::CallerLine<'a>>,
    /// `live.by_caller` totals in all (the page lists the largest).
    caller_totals: usize,
    stacks: Vec<StackPage>,
    /// `KVSCOPE_STACK_MIN` of the run (0: stacks off).
    stack_min: u64,
}

#[derive(Serialize)]
struct StackPage {
    device: u32,
    address: String,
    size: u64,
    /// `file!symbol` (or `file+0xoffset`), innermost first.
    frames: Vec<String>,
}

/// Callers listed on the page, and stacks.
const CALLERS_SHOWN: usize = 15;
const STACKS_SHOWN: usize = 10;

fn who_of(r: &Report) -> Who<'_> {
    Who {
        known: who::known(r),
        callers: who::by_caller(r, CALLERS_SHOWN),
        caller_totals: r.live.by_caller.len(),
        stacks: who::stacks(r, STACKS_SHOWN)
            .into_iter()
            .map(|s| StackPage {
                device: s.row.device,
                address: format!("{:#x}", s.row.address),
                size: s.row.size,
                frames: s.frames.into_iter().map(who::frame_line).collect(),
            })
            .collect(),
        stack_min: r.shim.stack_min,
    }
}

pub fn render(r: &Report, check: &CheckResult) -> Result<String, String> {
    let devices = check
        .processes
        .iter()
        .flat_map(|p| &p.devices)
        .map(|d| DevicePage {
            device: d.device,
            total: d.breakdown.total_bytes,
            samples: r
                .timeline
                .iter()
                .filter_map(|s| {
                    let x = s.devices.iter().find(|x| x.device == d.device)?;
                    let opt = |v: Option<u64>| v.map_or(-1.0, |v| v as f64);
                    Some([
                        s.t_ms,
                        x.live_bytes as f64,
                        opt(x.reserved_bytes),
                        opt(x.device_used_bytes),
                        x.max_live_bytes as f64,
                        opt(x.framework.as_ref().map(|f| f.allocated_bytes)),
                        opt(x.framework.as_ref().map(|f| f.reserved_bytes)),
                    ])
                })
                .collect(),
            parts: &d.breakdown.parts,
        })
        .collect();
    let largest = super::summary::groups(r)
        .into_iter()
        .take(15)
        .map(|g| Row {
            made_at: g.made_at(),
            size_text: g.size_text(),
            count: g.count,
            size: g.size,
            total: g.total,
            api: g.api,
            device: g.device,
            phase: g.phase,
        })
        .collect();
    let p = &r.process;
    let page = Page {
        title: format!("pid {} on {}", p.pid, p.hostname.as_deref().unwrap_or("?")),
        meta: format!(
            "{} | {} report at {:.0} ms | {} critical, {} warnings{}",
            p.cmdline.join(" "),
            r.reason.map(|x| x.name()).unwrap_or("?"),
            r.t_ms,
            check.critical,
            check.warnings,
            check
                .model
                .as_ref()
                .map(|m| format!(" | checked against {m}"))
                .unwrap_or_default()
        ),
        t_ms: r.t_ms,
        devices,
        markers: &r.markers,
        findings: check.findings.iter().map(view).collect(),
        largest,
        listed: r.live.allocations.len(),
        live_count: r.live.count,
        engine_plan: super::plan::json(&check.engine_plan),
        who: who_of(r),
    };
    // Inside <script>, "</script" would end the element, and "<!--" can
    // keep the real end from ending it: no "<" at all. JSON has "<" only
    // inside strings, where "\u003c" reads back the same.
    let json = serde_json::to_string(&page)
        .map_err(|e| e.to_string())?
        .replace('<', "\\u003c");
    Ok(TEMPLATE.replace("/*KVSCOPE_DATA*/", &json))
}
