//! The engine's memory plan (its start-up log, `crate::engine`) against
//! what the trace measured on each device: a row per figure, and an
//! `engine_plan_mismatch` warning where the two differ by more than the
//! tolerance. `apply` adds both to a finished `CheckResult`, so that any
//! command that checks reports (`check`, `diagnose`) can take an engine log.

use super::breakdown::Breakdown;
use super::finding::{Facts, Finding};
use super::kind::Severity;
use super::kv_detect::Layout;
pub use super::plan::{Figure, PlanRow, PlanTable, Value};
use super::result::{CheckResult, DeviceResult};
use crate::engine::EnginePlan;
use crate::units::Bytes;

/// What the trace measured on one device, in the engine's terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measured {
    pub weights: Option<u64>,
    pub kv_bytes: Option<u64>,
    pub kv_tokens: Option<u64>,
    pub graph_pool: Option<u64>,
    /// Device memory in use beyond what the framework's allocator holds
    /// (beyond every tracked allocation when it reported no counters).
    pub non_torch: Option<u64>,
    /// The activation peak: peak - weights - preallocated KV.
    pub torch_peak: Option<u64>,
}

impl Measured {
    pub fn of(d: &DeviceResult) -> Measured {
        let b: &Breakdown = &d.breakdown;
        let graph = b.graph_pool_bytes;
        // The engine's cache is the preallocated one: per-request tensors
        // (Hugging Face) hold requests' lengths, not a capacity.
        let per_request = Layout::PerRequest.name();
        let pools: Vec<_> = d
            .kv_cache
            .iter()
            .filter(|k| k.layout != per_request)
            .collect();
        let tokens = pools.iter().map(|k| k.tokens).filter(|&t| t > 0).min();
        let kv_bytes: u64 = pools.iter().map(|k| k.bytes).sum();
        Measured {
            // The breakdown's weights are everything before serving; the
            // engine's exclude the graphs captured after the KV cache.
            weights: Some(b.weights_bytes.saturating_sub(graph.unwrap_or(0))),
            kv_bytes: (kv_bytes > 0).then_some(kv_bytes),
            kv_tokens: tokens,
            graph_pool: graph,
            non_torch: match (b.used_bytes, b.framework_reserved_bytes) {
                (Some(u), Some(r)) => Some(u.saturating_sub(r)),
                _ => b.untracked_bytes,
            },
            torch_peak: b.peak_activations_bytes,
        }
    }
}

fn bytes(v: Option<u64>) -> Option<Value> {
    v.map(|b| Value::Bytes(Bytes(b)))
}

/// The table of a plan against one device's measures.
pub fn rows(plan: &EnginePlan, m: &Measured) -> Vec<PlanRow> {
    Figure::ALL
        .iter()
        .map(|&figure| {
            let (engine, measured) = match figure {
                Figure::Weights => (bytes(plan.weights_bytes), bytes(m.weights)),
                Figure::KvCacheBytes => (bytes(plan.kv_cache_bytes), bytes(m.kv_bytes)),
                Figure::KvCacheTokens => (
                    plan.kv_tokens.map(Value::Tokens),
                    m.kv_tokens.map(Value::Tokens),
                ),
                Figure::MaxConcurrency => match plan.max_concurrency {
                    Some(c) => (
                        Some(Value::Times(c.times)),
                        m.kv_tokens
                            .filter(|_| c.context > 0)
                            .map(|t| Value::Times(t as f64 / c.context as f64)),
                    ),
                    None => (None, None),
                },
                Figure::GraphPool => (bytes(plan.graph_pool_bytes), bytes(m.graph_pool)),
                Figure::NonTorch => (bytes(plan.non_torch_bytes), bytes(m.non_torch)),
                // Only the profile's forward pass: the trace has no figure for it.
                Figure::NonTorchIncrease => (bytes(plan.non_torch_increase_bytes), None),
                Figure::TorchPeak => (bytes(plan.torch_peak_bytes), bytes(m.torch_peak)),
            };
            let off = match (engine, measured) {
                (Some(e), Some(x)) if e.as_f64() > 0.0 => {
                    Some((x.as_f64() - e.as_f64()) / e.as_f64())
                }
                // The engine planned none and some was measured: off without bound.
                (Some(_), Some(x)) if x.as_f64() > 0.0 => Some(f64::INFINITY),
                (Some(_), Some(_)) => Some(0.0),
                _ => None,
            };
            PlanRow {
                figure,
                engine,
                measured,
                off,
            }
        })
        .collect()
}

/// The findings of one table: a warning per figure off by more than `tolerance`.
pub fn compare(plan: &EnginePlan, m: &Measured, tolerance: f64) -> (Vec<PlanRow>, Vec<Finding>) {
    let rows = rows(plan, m);
    let engine = plan.engine.map_or("engine", |e| e.name());
    let findings = rows
        .iter()
        .filter_map(|r| {
            let (off, planned, measured) = (r.off?, r.engine?, r.measured?);
            (off.abs() > tolerance).then(|| {
                Finding::new(
                    Severity::Warning,
                    Facts::EnginePlanMismatch {
                        engine,
                        figure: r.figure,
                        planned,
                        measured,
                        off,
                        tolerance,
                    },
                )
            })
        })
        .collect();
    (rows, findings)
}

/// Adds the plan's table and findings to every checked device of `result`,
/// and counts severities and exit statuses again (`fail_on` as the check's).
pub fn apply(result: &mut CheckResult, plan: &EnginePlan, tolerance: f64, fail_on: Severity) {
    let engine = plan.engine.map_or("engine", |e| e.name());
    for p in &result.processes {
        for d in &p.devices {
            let (rows, mut found) = compare(plan, &Measured::of(d), tolerance);
            for f in &mut found {
                f.process = Some(p.label.clone());
                f.device = Some(d.device);
                f.run = p.run;
            }
            result.findings.extend(found);
            result.engine_plan.push(PlanTable {
                engine,
                process: p.label.clone(),
                device: d.device,
                run: p.run,
                tolerance,
                rows,
            });
        }
    }
    result
        .findings
        .sort_by_key(|f| (std::cmp::Reverse(f.severity), f.run));
    let tally = |run: Option<usize>, s: Severity| {
        result
            .findings
            .iter()
            .filter(|f| run.is_none_or(|r| f.run == r) && f.severity == s)
            .count()
    };
    let mut counts = Vec::new();
    for i in 0..result.runs.len() {
        let fail = result
            .findings
            .iter()
            .any(|f| f.run == i && f.severity >= fail_on);
        counts.push((
            tally(Some(i), Severity::Critical),
            tally(Some(i), Severity::Warning),
            tally(Some(i), Severity::Info),
            i32::from(fail),
        ));
    }
    let totals = (
        tally(None, Severity::Critical),
        tally(None, Severity::Warning),
        tally(None, Severity::Info),
    );
    for (run, c) in result.runs.iter_mut().zip(counts) {
        (run.critical, run.warnings, run.info, run.exit_status) = c;
    }
    (result.critical, result.warnings, result.info) = totals;
    result.exit_status = result.runs.iter().map(|r| r.exit_status).max().unwrap_or(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::{Concurrency, Engine};

    fn plan() -> EnginePlan {
        EnginePlan {
            engine: Some(Engine::Vllm),
            weights_bytes: Some(16 << 30),
            kv_cache_bytes: Some(40 << 30),
            kv_tokens: Some(327_680),
            max_concurrency: Some(Concurrency {
                context: 8192,
                times: 40.0,
            }),
            graph_pool_bytes: None,
            non_torch_bytes: None,
            non_torch_increase_bytes: None,
            torch_peak_bytes: Some(1 << 30),
            lines: 5,
        }
    }

    fn measured() -> Measured {
        Measured {
            weights: Some(16 << 30),
            kv_bytes: Some(40 << 30),
            kv_tokens: Some(327_680),
            graph_pool: Some(512 << 20),
            non_torch: Some(600 << 20),
            torch_peak: Some(1 << 30),
        }
    }

    #[test]
    fn a_plan_that_holds_has_no_finding_and_says_what_was_not_logged() {
        let (rows, found) = compare(&plan(), &measured(), 0.1);
        assert!(found.is_empty(), "{found:?}");
        let graph = rows.iter().find(|r| r.figure == Figure::GraphPool).unwrap();
        assert_eq!((graph.engine, graph.off), (None, None));
        assert!(graph.measured.is_some());
        let c = rows
            .iter()
            .find(|r| r.figure == Figure::MaxConcurrency)
            .unwrap();
        assert_eq!(c.measured, Some(Value::Times(40.0)));
    }

    #[test]
    fn each_figure_off_is_a_warning_with_both_numbers() {
        let mut m = measured();
        m.weights = Some(20 << 30); // +25 %
        m.kv_tokens = Some(200_000); // tokens and concurrency both off
        m.torch_peak = Some(3 << 30);
        let (_, found) = compare(&plan(), &m, 0.1);
        let figures: Vec<Figure> = found
            .iter()
            .map(|f| match &f.facts {
                Facts::EnginePlanMismatch { figure, .. } => *figure,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            figures,
            [
                Figure::Weights,
                Figure::KvCacheTokens,
                Figure::MaxConcurrency,
                Figure::TorchPeak
            ]
        );
        let Facts::EnginePlanMismatch {
            planned,
            measured,
            off,
            ..
        } = &found[0].facts
        else {
            unreachable!()
        };
        assert_eq!(*planned, Value::Bytes(Bytes(16 << 30)));
        assert_eq!(*measured, Value::Bytes(Bytes(20 << 30)));
        assert!((off - 0.25).abs() < 1e-9);
        assert!(found.iter().all(|f| f.severity == Severity::Warning));
        // A wider tolerance lets 25 % through.
        assert_eq!(compare(&plan(), &m, 0.3).1.len(), 3);
    }
}
