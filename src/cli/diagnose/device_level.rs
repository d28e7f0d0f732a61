//! What a device-level diagnosis (no shim: `nvml_probe`) can and cannot
//! tell, applied to the check's result over the reports built from NVML's
//! figures. The driver counts one figure per process: the CUDA context,
//! weights, KV cache, activations and the allocator's cache together, with
//! no allocation behind it. So the four steps and the growth findings hold
//! (growth is growth, whoever holds it), and every finding that needs
//! allocations or a breakdown is dropped, named in a note, never guessed.

use crate::check::breakdown::Part;
use crate::check::kind::{FindingKind, Severity};
use crate::check::result::CheckResult;
use crate::check::steps::{Status, SEGMENT_WORDS};

/// Said once in the text and in the JSON (`diagnose.level_note`).
pub const SCOPE: &str = "device level (NVML, no shim): each process's device memory as the driver counts it, sampled at every marker and every 50 ms while requests are in flight; the steps and growth between them are measured, but there is no breakdown of weights / KV cache / activations by allocation, the CUDA context and the allocator's cache count as use (a cache that settles after the first requests reads as growth that settles), and an out-of-memory failure is seen only as the request's error";

const DEVICE_WORDS: &str = "device-level (NVML)";

/// The findings a per-process device figure supports.
fn supported(k: FindingKind) -> bool {
    matches!(
        k,
        FindingKind::LeakPerRequest
            | FindingKind::UnboundedGrowth
            | FindingKind::GrowthInconclusive
            | FindingKind::AllocatorWarmup
            | FindingKind::AllocatorHighWater
            | FindingKind::Utilization
            // From the request markers alone.
            | FindingKind::ContextSpike
    )
}

/// Drops the findings device level cannot support (a note names them),
/// words the steps as device-level, and counts again.
pub fn restrict(result: &mut CheckResult, fail_on: Severity) {
    let mut dropped: Vec<&'static str> = result
        .findings
        .iter()
        .map(|f| f.kind())
        .filter(|&k| !supported(k))
        .map(FindingKind::as_str)
        .collect();
    dropped.sort_unstable();
    dropped.dedup();
    result.findings.retain(|f| supported(f.kind()));
    if !dropped.is_empty() {
        result.notes.push(format!(
            "not judged at device level (they need the shim's allocations): {}",
            dropped.join(", ")
        ));
    }
    for p in &mut result.processes {
        for d in &mut p.devices {
            // No allocation to split by: one part, the driver's figure.
            let b = &mut d.breakdown;
            b.parts = vec![Part {
                category: "held (NVML)",
                bytes: b.tracked_bytes,
                rule: "what the driver counts for the process: weights, KV cache, activations, allocator caches and the CUDA context together",
            }];
            b.peak_activations_bytes = None;
            for s in &mut d.steps {
                s.detail = s.detail.replace(SEGMENT_WORDS, DEVICE_WORDS);
                // The baseline is measured, not split: weights, KV cache and
                // context are one figure here (never compared with the model).
                // (The check's detail starts with that figure.)
                if s.number == 1 && s.status != Status::Skipped {
                    let held = s
                        .detail
                        .split(" live when")
                        .next()
                        .unwrap_or("")
                        .to_string();
                    s.status = Status::Ok;
                    s.detail = format!(
                        "{held} held on the device when serving began (weights, KV cache, CUDA context and allocator cache together: not told apart at device level)"
                    );
                }
            }
        }
    }
    result.recount(fail_on);
}
