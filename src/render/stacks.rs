//! Who made the big allocations: their native stacks (`stacks[]`) and, in a
//! post-mortem, the callers of the largest allocations at the failure.

use crate::report::{CallSite, Report};
use crate::units::bytes;
use std::fmt::Write;

/// A frame as people read it: `symbol (file)`, or `file+0xoffset`.
pub fn frame(site: &CallSite) -> String {
    site.label()
}

fn frames(r: &Report, indexes: &[u32]) -> String {
    let names: Vec<String> = indexes
        .iter()
        .filter_map(|&i| r.callers.get(i as usize))
        .map(frame)
        .collect();
    if names.is_empty() {
        "(no frames outside the shim)".into()
    } else {
        names.join(" <- ")
    }
}

/// The stacks of the largest live allocations (at most `limit`).
pub fn largest(out: &mut String, r: &Report, limit: usize) {
    if r.stacks.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  stacks of the largest live allocations (at least {}):",
        bytes(r.shim.stack_min)
    );
    for s in r.stacks.iter().take(limit) {
        let _ = writeln!(
            out,
            "    {:>10} at {:#x} on device {}: {}",
            bytes(s.size),
            s.address,
            s.device,
            frames(r, &s.frames)
        );
    }
}

/// In a post-mortem: who made the largest allocations live at the failure.
pub fn at_oom(out: &mut String, r: &Report) {
    let Some(o) = &r.oom else { return };
    for a in o.largest.iter().take(5) {
        let stack = r.stacks.iter().find(|s| s.address == a.address);
        let who = match (stack, r.caller(a.caller)) {
            (Some(s), _) if !s.frames.is_empty() => frames(r, &s.frames),
            (_, Some(c)) => frame(c),
            _ => continue,
        };
        let _ = writeln!(
            out,
            "    {:>10} {} at {:#x}: {who}",
            bytes(a.size),
            a.api.name(),
            a.address
        );
    }
}
