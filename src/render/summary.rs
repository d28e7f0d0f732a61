//! The human summary of one report.

use crate::report::{error_name, Api, Report, Space, SpaceStats};
use crate::units::{bytes, count, duration_ms};
use std::fmt::Write;

/// Whether a memory space saw any call worth a line.
fn space_used(s: &SpaceStats) -> bool {
    s.allocs != 0 || s.live_count != 0 || s.failures != 0
}

fn space_line(out: &mut String, name: &str, s: &SpaceStats) {
    if !space_used(s) {
        return;
    }
    let peak_at = s
        .peak_t_ms
        .map(|t| format!(" at {}", duration_ms(t)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "    {name:<8} live {} in {} allocations, peak {}{peak_at}; {} allocated / {} freed in total{}",
        bytes(s.live_bytes),
        count(s.live_count),
        bytes(s.peak_bytes),
        count(s.allocs),
        count(s.frees),
        if s.failures > 0 { format!(", {} failed", count(s.failures)) } else { String::new() }
    );
}

pub fn render(r: &Report, top: usize) -> String {
    let mut out = String::new();
    let p = &r.process;
    let cmd = p.cmdline.join(" ");
    let reason = r.reason.map(|x| x.name()).unwrap_or("?");
    let _ = writeln!(
        out,
        "process {} ({}) on {}: {reason} report at {}{}",
        p.pid,
        if cmd.is_empty() { "?".into() } else { cmd },
        p.hostname.as_deref().unwrap_or("?"),
        duration_ms(r.t_ms),
        r.reason_detail
            .as_ref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    if !r.modes.is_empty() {
        let _ = writeln!(out, "seen through: {}", r.modes.join(", "));
    }
    for d in &r.devices {
        let total = d
            .total_bytes
            .map(|t| format!(", {} total", bytes(t)))
            .unwrap_or_default();
        let free = d
            .free_bytes
            .map(|f| format!(", {} free at the last sample", bytes(f)))
            .unwrap_or_default();
        let _ = writeln!(out, "  device {}{total}{free}", d.device);
        space_line(&mut out, "memory", &d.memory);
        space_line(&mut out, "managed", &d.managed);
        // PyTorch's own view at the last point that had it.
        let latest = r.timeline.iter().rev().find_map(|s| {
            s.devices
                .iter()
                .find(|x| x.device == d.device)?
                .framework
                .clone()
        });
        if let Some(f) = latest {
            let _ = writeln!(
                out,
                "    PyTorch at {}: {} allocated in tensors, {} reserved ({} cached or fragmented)",
                duration_ms(f.sampled_t_ms),
                bytes(f.allocated_bytes),
                bytes(f.reserved_bytes),
                bytes(f.reserved_bytes.saturating_sub(f.allocated_bytes))
            );
        }
    }
    // Pinned host memory belongs to no device: its own heading, so that it
    // does not read as part of the last device listed above it.
    if space_used(&r.host) {
        let _ = writeln!(out, "  host (pinned memory, on no device)");
    }
    space_line(&mut out, "pinned", &r.host);

    if !r.live.allocations.is_empty() {
        let groups = groups(r);
        let _ = writeln!(
            out,
            "  largest live allocations ({} kinds of {} listed, {} live, {} in all{}):",
            top.min(groups.len()),
            groups.len(),
            count(r.live.count),
            bytes(r.live.bytes),
            if r.live.truncated {
                "; the report lists only the largest"
            } else {
                ""
            }
        );
        // The phase column is as wide as the longest phase shown (marker
        // labels can be long), within 16..=40; a longer one is cut with "…".
        let w = groups
            .iter()
            .take(top)
            .map(|g| g.phase.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(16, PHASE_MAX);
        let _ = writeln!(
            out,
            "    {:>7}  {:>10}  {:>10}  {:<24} {:>6}  {:<w$} made at",
            "count", "size", "total", "api", "device", "phase"
        );
        for g in groups.iter().take(top) {
            let _ = writeln!(
                out,
                "    {:>7}  {:>10}  {:>10}  {:<24} {:>6}  {:<w$} {}",
                format!("{} x", count(g.count)),
                g.size_text(),
                bytes(g.total),
                g.api,
                g.place(),
                clip(&g.phase, w),
                g.made_at()
            );
        }
    }
    if !r.live.by_kind.is_empty() {
        let _ = writeln!(out, "  live by entry point:");
        for k in r.live.by_kind.iter().take(8) {
            let _ = writeln!(
                out,
                "    {:>10} in {:>8} x {:<28} {}",
                bytes(k.bytes),
                count(k.count),
                k.api,
                place(k.space, k.device)
            );
        }
    }
    let callers = super::who::by_caller(r, 8);
    if !callers.is_empty() {
        let _ = writeln!(out, "  live by caller (the file that called CUDA):");
        for k in callers {
            let _ = writeln!(
                out,
                "    {:>10} in {:>8} x {:<28} device {}",
                bytes(k.bytes),
                count(k.count),
                k.file,
                k.device
            );
        }
    }
    super::stacks::largest(&mut out, r, 5);
    if r.live.by_stream.len() > 1 {
        let _ = writeln!(out, "  live by stream:");
        for k in r.live.by_stream.iter().take(8) {
            let _ = writeln!(
                out,
                "    {:>10} in {:>8} x {:<28} device {}",
                bytes(k.bytes),
                count(k.count),
                stream_name(k.stream),
                k.device
            );
        }
    }
    tensor_view(&mut out, r);
    let v = &r.vmm;
    if v.reserved_bytes > 0 || v.physical_bytes > 0 {
        let _ = writeln!(
            out,
            "  virtual memory: {} reserved, {} physical in {} handles, {} mapped",
            bytes(v.reserved_bytes),
            bytes(v.physical_bytes),
            v.handles.len(),
            bytes(v.mapped_bytes)
        );
    }
    for pool in &r.pools {
        let _ = writeln!(
            out,
            "  pool {:#x} on device {}: {} reserved, {} used ({} held free)",
            pool.handle,
            pool.device,
            bytes(pool.reserved_bytes),
            bytes(pool.used_bytes),
            bytes(pool.reserved_bytes.saturating_sub(pool.used_bytes))
        );
    }
    for (api, codes) in &r.failure_counts {
        for (code, n) in codes {
            let c: i32 = code.parse().unwrap_or(-1);
            let _ = writeln!(
                out,
                "  failed: {api} -> {code} ({}) x {}",
                error_name(c),
                count(*n)
            );
        }
    }
    let a = &r.anomalies;
    if a.untracked_frees + a.double_frees + a.size_mismatched_frees > 0 {
        let _ = writeln!(
            out,
            "  frees of unknown pointers: {}, double frees: {}, size mismatches: {}",
            count(a.untracked_frees),
            count(a.double_frees),
            count(a.size_mismatched_frees)
        );
    }
    for u in &a.unrouted_entry_points {
        let _ = writeln!(
            out,
            "  note: driver entry point {u} was handed out unhooked"
        );
    }
    for n in &a.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    if let Some(o) = &r.oom {
        let free = match (o.device_free_bytes, o.device_total_bytes) {
            (Some(f), Some(t)) => format!("; the device had {} free of {}", bytes(f), bytes(t)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  OUT OF MEMORY at {}: {} of {} on device {} failed ({}){free}; {} tracked live in {} allocations",
            duration_ms(o.t_ms),
            o.api,
            bytes(o.size),
            o.device,
            error_name(o.code),
            bytes(o.live_bytes),
            count(o.live_count)
        );
        super::stacks::at_oom(&mut out, r);
    }
    if !r.markers.is_empty() {
        let shown: Vec<String> = r
            .markers
            .iter()
            .take(12)
            .map(|m| format!("{} @{}", m.label, duration_ms(m.t_ms)))
            .collect();
        let more = if r.markers.len() > 12 {
            format!(" (+{} more)", r.markers.len() - 12)
        } else {
            String::new()
        };
        let _ = writeln!(out, "  markers: {}{more}", shown.join(", "));
    }
    out
}

/// Pluggable mode: what tensors asked for against what kvscope's pools hold.
fn tensor_view(out: &mut String, r: &Report) {
    if !r.modes.iter().any(|m| m == "pluggable") {
        return;
    }
    for pool in r.pools.iter().filter(|p| !p.default_pool) {
        let asked: u64 = r
            .live
            .by_kind
            .iter()
            .filter(|k| k.device == pool.device && k.api == Api::KvscopeMalloc.name())
            .map(|k| k.bytes)
            .sum();
        let _ = writeln!(
            out,
            "  tensors on device {}: {} allocated, {} reserved by the pool, {} reserved but not allocated",
            pool.device,
            bytes(asked),
            bytes(pool.reserved_bytes),
            bytes(pool.reserved_bytes.saturating_sub(asked))
        );
    }
}

fn stream_name(stream: u64) -> String {
    match stream {
        0 => "default stream".into(),
        1 => "legacy default stream".into(),
        2 => "per-thread default stream".into(),
        s => format!("stream {s:#x}"),
    }
}

/// Where a by-kind total lives: `device N`, or `host` for pinned host
/// memory (the report's device there is only the one current when it was
/// asked for, and the heading above says it is on no device).
fn place(space: Option<Space>, device: u32) -> String {
    match space {
        Some(Space::Host) => "host".into(),
        _ => format!("device {device}"),
    }
}

/// Live allocations alike: one size (as printed), entry point, device and
/// phase.
#[derive(Debug, PartialEq)]
pub struct Group {
    pub count: u64,
    /// The largest size in the group.
    pub size: u64,
    /// Sizes differ below the printed precision.
    pub varies: bool,
    pub total: u64,
    pub api: &'static str,
    pub device: u32,
    /// Pinned host memory: the device it was asked on is no place of its own.
    pub host: bool,
    pub phase: String,
    pub first_ms: f64,
    pub last_ms: f64,
}

impl Group {
    /// The device column: the ordinal, or `host` for pinned host memory.
    pub fn place(&self) -> String {
        if self.host {
            "host".into()
        } else {
            self.device.to_string()
        }
    }

    /// `1.72 GiB`, or `~72.5 MiB` where the sizes differ a little.
    pub fn size_text(&self) -> String {
        format!("{}{}", if self.varies { "~" } else { "" }, bytes(self.size))
    }

    /// `3.4 ms`, or `3.4 ms - 3.9 ms` for several made at different times.
    pub fn made_at(&self) -> String {
        let (a, b) = (duration_ms(self.first_ms), duration_ms(self.last_ms));
        if a == b {
            a
        } else {
            format!("{a} - {b}")
        }
    }
}

/// The listed live allocations grouped by (size as printed, api, device,
/// phase), largest size first (then the largest total).
pub fn groups(r: &Report) -> Vec<Group> {
    let mut by: std::collections::HashMap<(String, &'static str, u32, u32), Group> =
        std::collections::HashMap::new();
    for a in &r.live.allocations {
        let g = by
            .entry((bytes(a.size), a.api.name(), a.device, a.phase))
            .or_insert_with(|| Group {
                count: 0,
                size: a.size,
                varies: false,
                total: 0,
                api: a.api.name(),
                device: a.device,
                host: a.api.space() == Space::Host,
                phase: r.phase_name(a.phase),
                first_ms: a.t_ms,
                last_ms: a.t_ms,
            });
        g.varies |= g.size != a.size;
        g.size = g.size.max(a.size);
        g.count += 1;
        g.total = g.total.saturating_add(a.size);
        g.first_ms = g.first_ms.min(a.t_ms);
        g.last_ms = g.last_ms.max(a.t_ms);
    }
    let mut v: Vec<Group> = by.into_values().collect();
    v.sort_by(|a, b| {
        (b.size, b.total, a.device, a.api, a.first_ms.to_bits()).cmp(&(
            a.size,
            a.total,
            b.device,
            b.api,
            b.first_ms.to_bits(),
        ))
    });
    v
}

/// The widest phase column of the live table.
const PHASE_MAX: usize = 40;

/// `s` cut to `w` characters, the last one "…" when it was longer.
fn clip(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        s.chars().take(w.saturating_sub(1)).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_phases_are_cut_to_the_column() {
        assert_eq!(super::clip("kv_cache", 16), "kv_cache");
        let c = super::clip(&"x".repeat(60), super::PHASE_MAX);
        assert_eq!(c.chars().count(), super::PHASE_MAX);
        assert!(c.ends_with('…'));
    }
}
