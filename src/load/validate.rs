//! What a report may claim before the reader computes with it. The shim never
//! writes figures near these bounds; a file that does is damaged or forged,
//! and is refused in one line instead of overflowing an analysis.

use crate::report::{LiveAlloc, Report, SpaceStats, LIVE_COLUMNS};

/// Bytes: 1 PiB, beyond any device, host or job.
const MAX_BYTES: u64 = 1 << 50;
/// Running totals (bytes ever allocated): 2^60.
const MAX_TOTAL: u64 = 1 << 60;
/// Counts of allocations, calls, rows.
const MAX_COUNT: u64 = 1 << 48;
/// Times: ms since start, ~300 years.
const MAX_MS: f64 = 1e13;
/// Device ordinals.
const MAX_DEVICE: u32 = 1 << 16;
/// Kernel thread ids: Linux's pid_max is at most 2^22.
const MAX_THREAD: u64 = 1 << 22;
/// Processes of one distributed job.
const MAX_WORLD: u64 = 1 << 20;

struct V(Vec<String>);

impl V {
    fn at_most(&mut self, what: impl FnOnce() -> String, n: u64, max: u64) {
        if n > max && self.0.is_empty() {
            self.0.push(format!(
                "{} is {n}, beyond any real figure (at most {max})",
                what()
            ));
        }
    }
    fn bytes(&mut self, what: impl FnOnce() -> String, n: u64) {
        self.at_most(what, n, MAX_BYTES);
    }
    fn count(&mut self, what: impl FnOnce() -> String, n: u64) {
        self.at_most(what, n, MAX_COUNT);
    }
    fn thread(&mut self, what: impl FnOnce() -> String, t: u32) {
        self.at_most(what, t as u64, MAX_THREAD);
    }
    fn device(&mut self, what: impl FnOnce() -> String, d: u32) {
        self.at_most(what, d as u64, MAX_DEVICE as u64);
    }
    fn ms(&mut self, what: impl FnOnce() -> String, t: f64) {
        if !(0.0..=MAX_MS).contains(&t) && self.0.is_empty() {
            self.0
                .push(format!("{} is {t}, not a time in milliseconds", what()));
        }
    }
    fn space(&mut self, at: &str, s: &SpaceStats) {
        self.bytes(|| format!("{at}.live_bytes"), s.live_bytes);
        self.bytes(|| format!("{at}.peak_bytes"), s.peak_bytes);
        self.at_most(
            || format!("{at}.allocated_bytes"),
            s.allocated_bytes,
            MAX_TOTAL,
        );
        self.at_most(|| format!("{at}.freed_bytes"), s.freed_bytes, MAX_TOTAL);
        for (k, n) in [
            ("live_count", s.live_count),
            ("allocs", s.allocs),
            ("frees", s.frees),
            ("failures", s.failures),
        ] {
            self.count(|| format!("{at}.{k}"), n);
        }
        if let Some(t) = s.peak_t_ms {
            self.ms(|| format!("{at}.peak_t_ms"), t);
        }
    }
    /// An index into `callers` (of which there are `n`).
    fn caller(&mut self, what: impl FnOnce() -> String, c: Option<u32>, n: usize) {
        if let Some(c) = c {
            if c as usize >= n {
                self.0
                    .push(format!("{} is {c}: the report has {n} callers", what()));
            }
        }
    }
    /// `markers`: how many the report holds; a row's phase counts them.
    fn rows(&mut self, at: &str, rows: &[LiveAlloc], markers: usize, callers: usize) {
        let mut sum = 0u128;
        for (i, a) in rows.iter().enumerate() {
            self.bytes(|| format!("{at}[{i}].size"), a.size);
            self.device(|| format!("{at}[{i}].device"), a.device);
            self.ms(|| format!("{at}[{i}].t_ms"), a.t_ms);
            self.count(|| format!("{at}[{i}].seq"), a.seq);
            self.thread(|| format!("{at}[{i}].thread"), a.thread);
            self.at_most(
                || format!("{at}[{i}].phase (the markers it counts)"),
                a.phase as u64,
                markers as u64,
            );
            self.caller(|| format!("{at}[{i}].caller"), a.caller, callers);
            sum += a.size as u128;
        }
        self.bytes(
            || format!("the sum of {at} sizes"),
            sum.min(u64::MAX as u128) as u64,
        );
    }
}

/// The sections the shim always writes, where the rest of the report shows
/// they had something to say: every section has serde defaults (older
/// reports lack newer fields), so a section cut out of a file would
/// otherwise read as "nothing happened" and pass a check (issue 12: a report
/// with `devices` removed gave "0 critical" on a planted leak).
fn sections(r: &Report) -> Result<(), String> {
    use crate::report::{Api, Space};
    let on_device = |space: Space| matches!(space, Space::Device | Space::Managed);
    let live_rows = r
        .live
        .allocations
        .iter()
        .filter(|a| on_device(a.api.space()))
        .count();
    // Not the call counts: a call is counted when it begins, before its
    // device is known, so a report written meanwhile (a dump during the
    // first allocation) has a call and no device yet. Its events, rows and
    // failures are recorded after the device is marked seen.
    let allocated = r
        .events
        .iter()
        .filter(|e| e.op == "alloc" && Api::from_name(&e.api).is_some_and(|a| on_device(a.space())))
        .count();
    let sampled = r.timeline.iter().any(|s| !s.devices.is_empty());
    if r.devices.is_empty() && (live_rows > 0 || allocated > 0 || sampled || !r.failures.is_empty())
    {
        let what = if live_rows > 0 {
            format!("{live_rows} live device allocations")
        } else if allocated > 0 {
            format!("{allocated} device allocations in `events`")
        } else if sampled {
            "device samples in `timeline`".to_string()
        } else {
            "failed device calls".to_string()
        };
        return Err(format!(
            "missing field `devices` (the report records {what}): the file was cut, not written so by the shim"
        ));
    }
    let held = r
        .devices
        .iter()
        .map(|d| d.memory.live_count)
        .fold(0u64, u64::saturating_add);
    let l = &r.live;
    if held > 0 && l.count == 0 && l.columns.is_empty() && l.allocations.is_empty() {
        return Err(format!(
            "missing field `live` (`devices` holds {held} live allocations): the file was cut, not written so by the shim"
        ));
    }
    Ok(())
}

/// Ok, or the first implausible figure.
pub fn validate(r: &Report) -> Result<(), String> {
    // The shim always writes these; without them a file is not a report.
    if r.reason.is_none() {
        return Err("missing field `reason`".into());
    }
    if r.process.pid == 0 {
        return Err("missing field `process.pid`".into());
    }
    sections(r)?;
    let mut v = V(Vec::new());
    v.ms(|| "t_ms".into(), r.t_ms);
    v.thread(|| "process.pid".into(), r.process.pid);
    v.thread(|| "process.ppid".into(), r.process.ppid);
    let l = &r.process.launch;
    let world = l.world_size.map(u64::from);
    v.at_most(
        || "process.launch.world_size".into(),
        world.unwrap_or(1),
        MAX_WORLD,
    );
    for (k, n) in [("rank", l.rank), ("local_rank", l.local_rank)] {
        // A rank counts from 0 within the world.
        let max = world.map_or(MAX_WORLD, |w| w.saturating_sub(1));
        v.at_most(
            || format!("process.launch.{k}"),
            n.map_or(0, u64::from),
            max,
        );
    }
    // Unix times in ms share the bound of times since start: ~300 years.
    v.at_most(
        || "written_unix_ms".into(),
        r.written_unix_ms,
        MAX_MS as u64,
    );
    v.at_most(
        || "process.start_unix_ms".into(),
        r.process.start_unix_ms,
        MAX_MS as u64,
    );
    let s = &r.shim;
    v.ms(|| "shim.sample_ms".into(), s.sample_ms as f64);
    v.ms(|| "shim.idle_ms".into(), s.idle_ms as f64);
    for (k, n) in [
        ("event_capacity", s.event_capacity),
        ("live_limit", s.live_limit),
        ("failure_limit", s.failure_limit),
    ] {
        v.count(|| format!("shim.{k}"), n);
    }
    for (i, d) in r.devices.iter().enumerate() {
        v.device(|| format!("devices[{i}].device"), d.device);
        v.bytes(
            || format!("devices[{i}].total_bytes"),
            d.total_bytes.unwrap_or(0),
        );
        v.bytes(
            || format!("devices[{i}].free_bytes"),
            d.free_bytes.unwrap_or(0),
        );
        if let Some(t) = d.free_sampled_t_ms {
            v.ms(|| format!("devices[{i}].free_sampled_t_ms"), t);
        }
        v.space(&format!("devices[{i}].memory"), &d.memory);
        v.space(&format!("devices[{i}].managed"), &d.managed);
    }
    v.space("host", &r.host);
    for (api, n) in &r.calls {
        v.count(|| format!("calls.{api}"), *n);
    }
    for (api, codes) in &r.failure_counts {
        for (code, n) in codes {
            v.count(|| format!("failure_counts.{api}.{code}"), *n);
        }
    }
    for (i, f) in r.failures.iter().enumerate() {
        v.ms(|| format!("failures[{i}].t_ms"), f.t_ms);
        v.device(|| format!("failures[{i}].device"), f.device);
        v.thread(|| format!("failures[{i}].thread"), f.thread);
    }
    let a = &r.anomalies;
    for (k, n) in [
        ("untracked_frees", a.untracked_frees),
        ("double_frees", a.double_frees),
        ("size_mismatched_frees", a.size_mismatched_frees),
    ] {
        v.count(|| format!("anomalies.{k}"), n);
    }
    let l = &r.live;
    // Rows are read by position: columns other than these mean other rows.
    // Reports from before the `caller` column hold the first nine.
    let older = &LIVE_COLUMNS[..LIVE_COLUMNS.len() - 1];
    if !l.columns.is_empty()
        && l.columns.iter().ne(LIVE_COLUMNS.iter())
        && l.columns.iter().ne(older.iter())
        && v.0.is_empty()
    {
        v.0.push(format!(
            "live.columns is {:?}, not the columns this reader reads ({})",
            l.columns,
            LIVE_COLUMNS.join(", ")
        ));
    }
    v.count(|| "live.count".into(), l.count);
    v.bytes(|| "live.bytes".into(), l.bytes);
    v.rows(
        "live.allocations",
        &l.allocations,
        r.markers.len(),
        r.callers.len(),
    );
    for (i, k) in l.by_kind.iter().enumerate() {
        v.device(|| format!("live.by_kind[{i}].device"), k.device);
        v.bytes(|| format!("live.by_kind[{i}].bytes"), k.bytes);
        v.count(|| format!("live.by_kind[{i}].count"), k.count);
    }
    for (i, k) in l.by_caller.iter().enumerate() {
        v.device(|| format!("live.by_caller[{i}].device"), k.device);
        v.bytes(|| format!("live.by_caller[{i}].bytes"), k.bytes);
        v.count(|| format!("live.by_caller[{i}].count"), k.count);
    }
    for (i, k) in l.by_stream.iter().enumerate() {
        v.device(|| format!("live.by_stream[{i}].device"), k.device);
        v.bytes(|| format!("live.by_stream[{i}].bytes"), k.bytes);
        v.count(|| format!("live.by_stream[{i}].count"), k.count);
    }
    for (i, k) in l.by_size_class.iter().enumerate() {
        v.bytes(|| format!("live.by_size_class[{i}].min_bytes"), k.min_bytes);
        // The class of a MAX_BYTES allocation ends beyond it.
        v.at_most(
            || format!("live.by_size_class[{i}].max_bytes"),
            k.max_bytes,
            MAX_TOTAL,
        );
        v.bytes(|| format!("live.by_size_class[{i}].bytes"), k.bytes);
        v.count(|| format!("live.by_size_class[{i}].count"), k.count);
    }
    let vm = &r.vmm;
    for (k, n) in [
        ("reserved_bytes", vm.reserved_bytes),
        ("physical_bytes", vm.physical_bytes),
        ("mapped_bytes", vm.mapped_bytes),
    ] {
        v.bytes(|| format!("vmm.{k}"), n);
    }
    for (i, x) in vm.reservations.iter().enumerate() {
        v.bytes(|| format!("vmm.reservations[{i}].size"), x.size);
        v.bytes(
            || format!("vmm.reservations[{i}].mapped_bytes"),
            x.mapped_bytes,
        );
    }
    for (i, h) in vm.handles.iter().enumerate() {
        v.bytes(|| format!("vmm.handles[{i}].size"), h.size);
        v.device(|| format!("vmm.handles[{i}].device"), h.device);
        v.count(|| format!("vmm.handles[{i}].mappings"), h.mappings);
        v.ms(|| format!("vmm.handles[{i}].t_ms"), h.t_ms);
    }
    for (i, p) in r.pools.iter().enumerate() {
        v.device(|| format!("pools[{i}].device"), p.device);
        for (k, n) in [
            ("reserved_bytes", p.reserved_bytes),
            ("used_bytes", p.used_bytes),
            ("reserved_high_bytes", p.reserved_high_bytes),
            ("used_high_bytes", p.used_high_bytes),
        ] {
            v.bytes(|| format!("pools[{i}].{k}"), n);
        }
        v.ms(|| format!("pools[{i}].sampled_t_ms"), p.sampled_t_ms);
    }
    for (i, m) in r.markers.iter().enumerate() {
        v.ms(|| format!("markers[{i}].t_ms"), m.t_ms);
    }
    for (i, s) in r.timeline.iter().enumerate() {
        v.ms(|| format!("timeline[{i}].t_ms"), s.t_ms);
        for (j, d) in s.devices.iter().enumerate() {
            let at = || format!("timeline[{i}].devices[{j}]");
            v.device(|| format!("{}.device", at()), d.device);
            v.bytes(|| format!("{}.live_bytes", at()), d.live_bytes);
            v.bytes(|| format!("{}.max_live_bytes", at()), d.max_live_bytes);
            v.bytes(
                || format!("{}.reserved_bytes", at()),
                d.reserved_bytes.unwrap_or(0),
            );
            v.bytes(
                || format!("{}.device_used_bytes", at()),
                d.device_used_bytes.unwrap_or(0),
            );
            v.count(|| format!("{}.live_count", at()), d.live_count);
            if let Some(f) = &d.framework {
                v.bytes(
                    || format!("{}.framework.allocated_bytes", at()),
                    f.allocated_bytes,
                );
                v.bytes(
                    || format!("{}.framework.reserved_bytes", at()),
                    f.reserved_bytes,
                );
                v.ms(
                    || format!("{}.framework.sampled_t_ms", at()),
                    f.sampled_t_ms,
                );
            }
        }
    }
    for (i, s) in r.stacks.iter().enumerate() {
        v.device(|| format!("stacks[{i}].device"), s.device);
        v.bytes(|| format!("stacks[{i}].size"), s.size);
        for (j, f) in s.frames.iter().enumerate() {
            v.caller(
                || format!("stacks[{i}].frames[{j}]"),
                Some(*f),
                r.callers.len(),
            );
        }
    }
    for (i, e) in r.events.iter().enumerate() {
        v.ms(|| format!("events[{i}].t_ms"), e.t_ms);
        v.device(|| format!("events[{i}].device"), e.device);
        v.thread(|| format!("events[{i}].thread"), e.thread);
        v.caller(|| format!("events[{i}].caller"), e.caller, r.callers.len());
    }
    if let Some(o) = &r.oom {
        v.ms(|| "oom.t_ms".into(), o.t_ms);
        v.device(|| "oom.device".into(), o.device);
        v.bytes(
            || "oom.device_free_bytes".into(),
            o.device_free_bytes.unwrap_or(0),
        );
        v.bytes(
            || "oom.device_total_bytes".into(),
            o.device_total_bytes.unwrap_or(0),
        );
        v.bytes(|| "oom.live_bytes".into(), o.live_bytes);
        v.count(|| "oom.live_count".into(), o.live_count);
        v.thread(|| "oom.thread".into(), o.thread);
        v.rows("oom.largest", &o.largest, r.markers.len(), r.callers.len());
    }
    if let Some(h) = &r.out_of_memory {
        v.count(|| "out_of_memory.failures".into(), h.failures);
        v.ms(|| "out_of_memory.first_t_ms".into(), h.first_t_ms);
        v.count(
            || "out_of_memory.allocations_after".into(),
            h.allocations_after,
        );
    }
    match v.0.pop() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Reason;

    /// Found by the fuzzer: counts summed before they were judged overflowed.
    #[test]
    fn absurd_counts_are_refused_not_overflowed() {
        let mut r = Report {
            reason: Some(Reason::Exit),
            ..Report::default()
        };
        r.process.pid = 1;
        r.calls = [
            ("cudaMalloc".to_string(), u64::MAX),
            ("cuMemAlloc_v2".to_string(), 2),
        ]
        .into();
        assert!(validate(&r).is_err());
        r.calls.clear();
        r.devices = vec![Default::default(), Default::default()];
        for d in &mut r.devices {
            d.memory.live_count = u64::MAX;
        }
        assert!(validate(&r).is_err());
    }
}
