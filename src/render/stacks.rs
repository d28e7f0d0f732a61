//! Who made the big allocations: their native stacks (`stacks[]`) and, in a
//! post-mortem, the callers of the largest allocations at the failure.

use crate::report::{CallSite, Report};
use crate::units::bytes;
use std::fmt::Write;

/// A frame as people read it: `symbol (file)`, or `file+0xoffset`.
pub fn frame(site: &CallSite) -> String {
    site.label()
}

/// A stack on one line, innermost first.
fn joined(sites: Vec<&CallSite>) -> String {
    let names: Vec<String> = sites.into_iter().map(frame).collect();
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
    for s in super::who::stacks(r, limit) {
        let _ = writeln!(
            out,
            "    {:>10} at {:#x} on device {}: {}",
            bytes(s.row.size),
            s.row.address,
            s.row.device,
            joined(s.frames)
        );
    }
}

/// In a post-mortem: who made the largest allocations live at the failure.
pub fn at_oom(out: &mut String, r: &Report) {
    let Some(o) = &r.oom else { return };
    for a in o.largest.iter().take(5) {
        let stack = r.stacks.iter().find(|s| s.address == a.address);
        let who = match (stack, r.caller(a.caller)) {
            (Some(s), _) if !s.frames.is_empty() => joined(super::who::frames(r, &s.frames)),
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
