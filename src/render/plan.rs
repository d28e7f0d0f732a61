//! The engine's plan against the trace: the words of
//! `engine_plan_mismatch`, and the table of every figure (text and JSON).

use super::words::Words;
use crate::check::plan::{Figure, PlanRow, PlanTable, Value};
use crate::units::{count, Bytes};
use serde::Serialize;
use std::fmt::Write;

pub fn label(f: Figure) -> &'static str {
    match f {
        Figure::Weights => "weights",
        Figure::KvCacheBytes => "KV cache",
        Figure::KvCacheTokens => "KV cache tokens",
        Figure::MaxConcurrency => "max concurrency",
        Figure::GraphPool => "CUDA graphs",
        Figure::NonTorch => "outside PyTorch",
        Figure::NonTorchIncrease => "outside PyTorch, profile increase",
        Figure::TorchPeak => "activation peak",
    }
}

/// Where the trace's figure comes from.
fn source(f: Figure) -> &'static str {
    match f {
        Figure::Weights => "live allocations made before serving, not KV cache, less the CUDA graphs",
        Figure::KvCacheBytes | Figure::KvCacheTokens => "the KV cache recognised in the trace",
        Figure::MaxConcurrency => "measured KV tokens / the logged tokens per request",
        Figure::GraphPool => "live allocations made between the `warmup` marker and serving",
        Figure::NonTorch => "device memory in use beyond PyTorch's reserved memory (without its counters: beyond every tracked allocation and its rounding)",
        Figure::NonTorchIncrease => "not measured: only the profile's forward pass",
        Figure::TorchPeak => "tracked peak - weights - preallocated KV cache",
    }
}

fn show(v: Value) -> String {
    match v {
        Value::Bytes(b) => b.to_string(),
        Value::Tokens(n) => format!("{} tokens", count(n)),
        Value::Times(x) => format!("{x:.2}x"),
    }
}

fn unit(v: Value) -> &'static str {
    match v {
        Value::Bytes(_) => "bytes",
        Value::Tokens(_) => "tokens",
        Value::Times(_) => "times",
    }
}

fn number(v: Value) -> serde_json::Value {
    match v {
        Value::Bytes(Bytes(b)) => b.into(),
        Value::Tokens(n) => n.into(),
        Value::Times(x) => x.into(),
    }
}

fn off_text(off: f64) -> String {
    if off.is_finite() {
        format!("{:+.0}%", off * 100.0)
    } else {
        "none planned".into()
    }
}

fn advice(f: Figure, off: f64) -> &'static str {
    match f {
        Figure::Weights => "the weights on the GPU are not what the engine loaded: look for a second copy, a dtype or quantisation other than intended, or memory made during loading beside the weights (the engine's KV budget was computed from its own figure)",
        Figure::KvCacheBytes | Figure::KvCacheTokens | Figure::MaxConcurrency if off < 0.0 => "the engine has less KV cache than it planned: something took room after its profile; size the cache from the measured figures (vLLM --kv-cache-memory or gpu_memory_utilization, SGLang --mem-fraction-static or --max-total-tokens, TGI --max-batch-total-tokens)",
        Figure::KvCacheBytes | Figure::KvCacheTokens | Figure::MaxConcurrency => "the KV cache is larger than the engine's plan: check that the log belongs to this run (model, --max-model-len, KV dtype), and leave headroom for what its profile did not see",
        Figure::GraphPool => "CUDA graphs took other than the engine measured at capture: capture fewer sizes (vLLM --cuda-graph-sizes / max_num_seqs) or leave headroom for them",
        Figure::NonTorch | Figure::NonTorchIncrease => "memory outside PyTorch's allocator (NCCL buffers, cuBLAS workspaces, the CUDA context) differs from the profile's: leave that much headroom (a lower gpu_memory_utilization / --mem-fraction-static)",
        Figure::TorchPeak => "the activation peak while serving is not the profile run's: the profile's batch was not the largest served (max_num_batched_tokens, chunked prefill) or serving keeps temporaries; leave headroom for the measured peak",
    }
}

pub fn words(
    engine: &str,
    figure: Figure,
    planned: Value,
    measured: Value,
    off: f64,
    tolerance: f64,
) -> Words {
    Words::new(format!(
        "{engine}'s plan is off for {}: it logged {}, the trace measured {} ({} from the plan)",
        label(figure),
        show(planned),
        show(measured),
        off_text(off)
    ))
    .evidence(format!(
        "measured from {}; tolerance {:.0}%",
        source(figure),
        tolerance * 100.0
    ))
    .number("figure", serde_json::to_value(figure).unwrap_or_default())
    .number("unit", unit(planned))
    .number("engine_value", number(planned))
    .number("measured_value", number(measured))
    .number(
        "off_fraction",
        if off.is_finite() {
            off.into()
        } else {
            serde_json::Value::Null
        },
    )
    .number("tolerance", tolerance)
    .next(advice(figure, off))
}

fn status(r: &PlanRow, tolerance: f64) -> &'static str {
    match (r.engine, r.measured, r.off) {
        (None, _, _) => "not logged",
        (_, None, _) => "not measured",
        (_, _, Some(o)) if o.abs() > tolerance => "OFF",
        _ => "ok",
    }
}

/// The tables, as text: one per process and device.
pub fn text(o: &mut String, tables: &[PlanTable]) {
    for t in tables {
        let _ = writeln!(
            o,
            "{}'s plan vs the trace ({}, device {}; tolerance {:.0}%):",
            t.engine,
            t.process,
            t.device,
            t.tolerance * 100.0
        );
        for r in &t.rows {
            let _ = writeln!(
                o,
                "    {:<34} {:>16} {:>16} {:>8}  {}",
                label(r.figure),
                r.engine.map_or("not logged".into(), show),
                r.measured.map_or("not measured".into(), show),
                r.off.map(off_text).unwrap_or_default(),
                status(r, t.tolerance)
            );
        }
    }
}

#[derive(Serialize)]
pub struct RowJson {
    figure: Figure,
    label: &'static str,
    unit: &'static str,
    /// null: not logged.
    engine: Option<serde_json::Value>,
    /// null: not measured.
    measured: Option<serde_json::Value>,
    off_fraction: Option<f64>,
    status: &'static str,
}

#[derive(Serialize)]
pub struct TableJson<'a> {
    engine: &'static str,
    process: &'a str,
    device: u32,
    run: usize,
    tolerance: f64,
    rows: Vec<RowJson>,
}

pub fn json(tables: &[PlanTable]) -> Vec<TableJson<'_>> {
    tables
        .iter()
        .map(|t| TableJson {
            engine: t.engine,
            process: &t.process,
            device: t.device,
            run: t.run,
            tolerance: t.tolerance,
            rows: t
                .rows
                .iter()
                .map(|r| RowJson {
                    figure: r.figure,
                    label: label(r.figure),
                    unit: r.engine.or(r.measured).map_or("", unit),
                    engine: r.engine.map(number),
                    measured: r.measured.map(number),
                    off_fraction: r.off.filter(|o| o.is_finite()),
                    status: status(r, t.tolerance),
                })
                .collect(),
        })
        .collect()
}
