//! `kvscope diff A B`: what grew between two reports, grouped.

use super::error::Result;
use crate::load::load;
use crate::report::{Api, LiveAlloc, Report, Space};
use crate::units::{bytes, count, signed_bytes};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Live allocations of one kind: device, entry point, size.
type Key = (u32, String, u64);

fn groups(r: &Report) -> BTreeMap<Key, (u64, Vec<&LiveAlloc>)> {
    let mut g: BTreeMap<Key, (u64, Vec<&LiveAlloc>)> = BTreeMap::new();
    for a in &r.live.allocations {
        let e = g
            .entry((a.device, a.api.name().to_string(), a.size))
            .or_default();
        e.0 += 1;
        e.1.push(a);
    }
    g
}

/// Where a group of allocations lives: pinned host memory is on no device.
fn place(api: &str, device: u32) -> String {
    match Api::from_name(api).map(Api::space) {
        Some(Space::Host) => "in pinned host memory".into(),
        Some(Space::Managed) => format!("managed, device {device}"),
        _ => format!("on device {device}"),
    }
}

/// What changed in all: what grew, what was freed, and the net when both.
/// Between two processes nothing grew or was freed: B holds more or less.
fn totals(changes: &[(i64, String)], same: bool) -> String {
    let grew: i64 = changes.iter().map(|c| c.0).filter(|d| *d > 0).sum();
    let freed: i64 = -changes.iter().map(|c| c.0).filter(|d| *d < 0).sum::<i64>();
    let (up, down) = if same { ("grew ", "freed ") } else { ("", "") };
    let (up_end, down_end) = if same { ("", "") } else { (" more", " less") };
    match (grew > 0, freed > 0) {
        (true, true) => format!(
            "{up}{}{up_end}, {down}{}{down_end}; net {}",
            bytes(grew as u64),
            bytes(freed as u64),
            signed_bytes(grew - freed)
        ),
        (false, true) => format!("{down}{}{down_end} in all", bytes(freed as u64)),
        _ => format!("{up}{}{up_end} in all", bytes(grew.max(0) as u64)),
    }
}

pub fn render(a: &Report, b: &Report, an: &str, bn: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "from {an} (pid {}, {:?} at {:.0} ms)",
        a.process.pid,
        a.reason.map(|r| r.name()).unwrap_or("?"),
        a.t_ms
    );
    let _ = writeln!(
        o,
        "  to {bn} (pid {}, {:?} at {:.0} ms)",
        b.process.pid,
        b.reason.map(|r| r.name()).unwrap_or("?"),
        b.t_ms
    );
    let mut devices: Vec<u32> = a
        .devices
        .iter()
        .chain(&b.devices)
        .map(|d| d.device)
        .collect();
    devices.sort_unstable();
    devices.dedup();
    for d in devices {
        let (x, y) = (
            a.device(d).cloned().unwrap_or_default(),
            b.device(d).cloned().unwrap_or_default(),
        );
        let _ = writeln!(
            o,
            "device {d}: live {} -> {} ({}), {} -> {} allocations, peak {} -> {}",
            bytes(x.memory.live_bytes),
            bytes(y.memory.live_bytes),
            signed_bytes(y.memory.live_bytes as i64 - x.memory.live_bytes as i64),
            count(x.memory.live_count),
            count(y.memory.live_count),
            bytes(x.memory.peak_bytes),
            bytes(y.memory.peak_bytes)
        );
    }
    let same = a.process.pid == b.process.pid;
    let (ga, gb) = (groups(a), groups(b));
    let mut changes: Vec<(i64, String)> = Vec::new();
    for (k, (nb, rows)) in &gb {
        let na = ga.get(k).map_or(0, |g| g.0);
        if *nb != na {
            let delta = (*nb as i64 - na as i64) * k.2 as i64;
            // Where the newest allocations of the group were made.
            let newest = rows
                .iter()
                .max_by(|p, q| p.t_ms.total_cmp(&q.t_ms))
                .map(|r| b.phase_name(r.phase))
                .unwrap_or_default();
            changes.push((
                delta,
                format!(
                    "{:>11}  {:+} x {} {} {} (newest made in `{newest}`)",
                    signed_bytes(delta),
                    *nb as i64 - na as i64,
                    bytes(k.2),
                    k.1,
                    place(&k.1, k.0)
                ),
            ));
        }
    }
    for (k, (na, _)) in &ga {
        if !gb.contains_key(k) {
            let delta = -(*na as i64 * k.2 as i64);
            changes.push((
                delta,
                format!(
                    "{:>11}  -{} x {} {} {} ({})",
                    signed_bytes(delta),
                    na,
                    bytes(k.2),
                    k.1,
                    place(&k.1, k.0),
                    if same { "all freed" } else { "none in B" }
                ),
            ));
        }
    }
    changes.sort_by_key(|(d, _)| std::cmp::Reverse(d.unsigned_abs()));
    if changes.is_empty() {
        let _ = writeln!(o, "no change in live allocations");
    } else {
        let _ = writeln!(
            o,
            "live allocations that {} ({}), largest first:",
            if same { "changed" } else { "differ" },
            totals(&changes, same)
        );
        for (_, line) in changes.iter().take(20) {
            let _ = writeln!(o, "  {line}");
        }
        if changes.len() > 20 {
            let _ = writeln!(o, "  ... {} more groups", changes.len() - 20);
        }
    }
    let vd = b.vmm.physical_bytes as i64 - a.vmm.physical_bytes as i64;
    if vd != 0 {
        let _ = writeln!(o, "VMM physical memory: {}", signed_bytes(vd));
    }
    let held = |r: &Report| {
        r.pools
            .iter()
            .map(|p| p.reserved_bytes.saturating_sub(p.used_bytes))
            .sum::<u64>() as i64
    };
    if held(b) != held(a) {
        let _ = writeln!(
            o,
            "memory held free by pools: {}",
            signed_bytes(held(b) - held(a))
        );
    }
    if !same {
        let _ = writeln!(
            o,
            "note: two different processes; addresses are not compared, only kinds of allocations"
        );
    }
    o
}

pub fn run(a: &Path, b: &Path) -> Result<i32> {
    let (ra, rb) = (load(a)?, load(b)?);
    print!(
        "{}",
        render(&ra, &rb, &a.display().to_string(), &b.display().to_string())
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::totals;

    #[test]
    fn totals_say_grown_and_freed_in_one_process_more_and_less_across_two() {
        let changes = vec![(1024, String::new()), (-3072, String::new())];
        assert_eq!(
            totals(&changes, true),
            "grew 1.00 KiB, freed 3.00 KiB; net -2.00 KiB"
        );
        assert_eq!(
            totals(&changes, false),
            "1.00 KiB more, 3.00 KiB less; net -2.00 KiB"
        );
        assert_eq!(totals(&changes[1..], true), "freed 3.00 KiB in all");
        assert_eq!(totals(&changes[..1], false), "1.00 KiB more in all");
    }
}
