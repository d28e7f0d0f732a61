//! `kvscope report FILE --html OUT.html`: one self-contained page (no
//! network, no external script) with the memory timeline and its markers,
//! the breakdown and the findings.

use super::finding::{view, FindingView};
use crate::check::breakdown::Part;
use crate::check::result::CheckResult;
use crate::report::Report;
use serde::Serialize;

const TEMPLATE: &str = include_str!("report.html");

#[derive(Serialize)]
struct Row {
    size: u64,
    api: &'static str,
    device: u32,
    phase: String,
    t_ms: f64,
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
    let largest = r
        .live
        .allocations
        .iter()
        .take(15)
        .map(|a| Row {
            size: a.size,
            api: a.api.name(),
            device: a.device,
            phase: r.phase_name(a.phase),
            t_ms: a.t_ms,
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
    };
    // Inside <script>, "</" could end the element: JSON allows "<\/".
    let json = serde_json::to_string(&page)
        .map_err(|e| e.to_string())?
        .replace("</", "<\\/");
    Ok(TEMPLATE.replace("/*KVSCOPE_DATA*/", &json))
}
