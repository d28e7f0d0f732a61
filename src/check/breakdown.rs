//! Where one device's memory goes, by the rules written next to each part.

use super::category::{Category, Rule};
use super::kv_detect::KvFound;
use super::library::{self, LibraryPart};
use super::markers::Phases;
use crate::report::{Report, Space};
use serde::Serialize;

const GRANULARITY: u64 = 2 << 20;

#[derive(Clone, Debug, Serialize)]
pub struct Part {
    pub category: &'static str,
    pub bytes: u64,
    pub rule: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Breakdown {
    pub device: u32,
    pub total_bytes: Option<u64>,
    /// Device memory in use (cuMemGetInfo: total - free), when known.
    pub used_bytes: Option<u64>,
    pub tracked_bytes: u64,
    pub parts: Vec<Part>,
    pub peak_bytes: u64,
    pub peak_t_ms: Option<f64>,
    /// At the peak: peak - weights - KV cache.
    pub peak_activations_bytes: Option<u64>,
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub serving_leftover_bytes: u64,
    pub serving_leftover_count: u64,
    pub pool_held_bytes: u64,
    /// Live memory made after the `warmup` marker and before serving, not
    /// KV cache: CUDA graphs' pools and what the warm-up kept (None without
    /// both markers). Part of `weights_bytes` by its rule.
    pub graph_pool_bytes: Option<u64>,
    /// What the framework's allocator held from CUDA at its last sample
    /// (PyTorch's memory_reserved), when the program reported it.
    pub framework_reserved_bytes: Option<u64>,
    /// Device memory in use that no tracked allocation (nor its rounding,
    /// nor a pool's free part) explains: the context and unhooked paths.
    pub untracked_bytes: Option<u64>,
    /// Live device memory by the library that called CUDA (empty when the
    /// report names no callers), by `library_rule`.
    pub by_library: Vec<LibraryPart>,
    pub library_rule: &'static str,
}

/// Device memory in use at the end of the report: the last sample that knew it.
pub fn device_used(r: &Report, device: u32) -> Option<u64> {
    r.timeline
        .iter()
        .rev()
        .find_map(|s| {
            s.devices
                .iter()
                .find(|d| d.device == device)
                .and_then(|d| d.device_used_bytes)
        })
        .or_else(|| {
            let d = r.device(device)?;
            Some(d.total_bytes?.saturating_sub(d.free_bytes?))
        })
}

pub fn pool_held(r: &Report, device: u32) -> u64 {
    r.pools
        .iter()
        .filter(|p| p.device == device)
        .map(|p| p.reserved_bytes.saturating_sub(p.used_bytes))
        .sum()
}

pub fn breakdown(r: &Report, device: u32, kv: &KvFound, phases: &Phases) -> Breakdown {
    let stats = r.device(device).cloned().unwrap_or_default();
    let tracked = stats.memory.live_bytes;
    let rule = Rule::new(r, kv, phases);
    let serving = rule.serving();
    let (mut weights, mut leftovers, mut leftover_n) = (0u64, 0u64, 0u64);
    let mut plain: Vec<(u64, u64)> = Vec::new();
    for a in r
        .live
        .allocations
        .iter()
        .filter(|a| a.device == device && a.api.space() == Space::Device)
    {
        if a.api.plain() {
            plain.push((a.address, a.size));
        }
        match rule.of(kv, a) {
            Category::Weights => weights += a.size,
            Category::Activations => {
                leftovers += a.size;
                leftover_n += 1;
            }
            Category::KvCache | Category::Other => {}
        }
    }
    let waste = rounding(&mut plain);
    let graph_pool = graph_pool(r, device, kv, serving);
    let kv_bytes = kv.bytes();
    let held = pool_held(r, device);
    let overhead = held + waste;
    let used = device_used(r, device);
    let unknown = tracked.saturating_sub(weights + kv_bytes + leftovers);
    let mut parts = vec![
        Part { category: "weights", bytes: weights, rule: "allocations made before serving began (before the `serve` marker, or before the KV cache without one) that are not KV cache" },
        Part { category: "KV cache", bytes: kv_bytes, rule: "allocations whose sizes and count match the model's KV layout (paged, token pool or per request)" },
        Part { category: "activations & temporaries", bytes: leftovers, rule: "allocations made while serving that are not KV cache and were still live (at exit, anything here outlived its step)" },
        Part { category: "allocator overhead", bytes: overhead, rule: "memory pools hold free (reserved - used) + the driver's 2 MiB rounding of plain allocations" },
    ];
    let untracked = used.map(|u| u.saturating_sub(tracked + overhead));
    if let Some(u) = untracked {
        parts.push(Part {
            category: "CUDA context & untracked",
            bytes: u,
            rule: "device memory in use (cuMemGetInfo) beyond what was tracked: the context, other processes, unhooked paths",
        });
    }
    parts.push(Part { category: "unknown", bytes: unknown, rule: "tracked allocations none of the rules above claims (and rows beyond the report's live limit)" });
    let peak_act = (stats.memory.peak_bytes > 0).then(|| {
        stats
            .memory
            .peak_bytes
            .saturating_sub(weights + kv.preallocated_bytes())
    });
    Breakdown {
        device,
        total_bytes: stats.total_bytes,
        used_bytes: used,
        tracked_bytes: tracked,
        parts,
        peak_bytes: stats.memory.peak_bytes,
        peak_t_ms: stats.memory.peak_t_ms,
        peak_activations_bytes: peak_act,
        weights_bytes: weights,
        kv_bytes,
        serving_leftover_bytes: leftovers,
        serving_leftover_count: leftover_n,
        pool_held_bytes: held,
        graph_pool_bytes: graph_pool,
        untracked_bytes: untracked,
        framework_reserved_bytes: r.timeline.iter().rev().find_map(|s| {
            s.devices
                .iter()
                .find(|d| d.device == device)
                .and_then(|d| d.framework.as_ref())
                .map(|f| f.reserved_bytes)
        }),
        by_library: library::by_library(r, device),
        library_rule: library::RULE,
    }
}

/// The driver's rounding of plain allocations: the 2 MiB granules they
/// cover, less their bytes. Counted by address, not per allocation: the
/// driver hands small allocations out of a shared granule (on the H200 four
/// cuBLAS allocations of 4 B to 128 KiB sat in one 2 MiB page, 1.85 MiB of
/// rounding where 2 MiB each would say 7.85 MiB).
fn rounding(plain: &mut [(u64, u64)]) -> u64 {
    plain.sort_unstable();
    let (mut granules, mut bytes) = (0u64, 0u64);
    // The first granule not yet counted.
    let mut next = 0u64;
    for &(address, size) in plain.iter() {
        bytes += size;
        let first = (address / GRANULARITY).max(next);
        let end = address.saturating_add(size.max(1)).div_ceil(GRANULARITY);
        if end > first {
            granules += end - first;
            next = end;
        }
    }
    (granules * GRANULARITY).saturating_sub(bytes)
}

/// Live, not KV cache, made between the `warmup` marker and serving: vLLM
/// captures its CUDA graphs there, after the KV cache.
fn graph_pool(r: &Report, device: u32, kv: &KvFound, serving: Option<u32>) -> Option<u64> {
    let serving = serving?;
    let warmup = r
        .markers
        .iter()
        .position(|m| m.label.trim().eq_ignore_ascii_case("warmup"))? as u32;
    // Phase p: made after marker p - 1 and before marker p.
    Some(
        r.live
            .allocations
            .iter()
            .filter(|a| a.device == device && a.api.space() == Space::Device)
            .filter(|a| a.phase > warmup && a.phase < serving)
            .filter(|a| !kv.addresses.contains(&a.address))
            .map(|a| a.size)
            .sum(),
    )
}
