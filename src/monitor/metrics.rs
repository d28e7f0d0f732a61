//! Every metric the exporter serves, in one place: its name (base units,
//! `_bytes`, `_seconds`, `_total`), type and help text, documented in
//! docs/metrics.md (`drift.rs` keeps the two in step), and how each is
//! computed from the live states.
//!
//! Labels join with the exporters people already run: `UUID` and
//! `Hostname` as dcgm-exporter spells them, `model_name` as vLLM does;
//! `cuda_device` is the in-process ordinal and `pid` identifies a process.
//! The other facts of a process (rank, run id, command) sit on
//! `kvscope_process_info` only, to be joined on `pid` when needed. No label
//! takes unbounded values: no addresses, stacks or request ids; phases are
//! capped by the shim (`report::state::MAX_PHASES`), and those a request's
//! marker opened are one `requests` phase here.

use super::scan::Scan;
use crate::check::markers::is_request;
use crate::report::state::{DeviceState, SpaceState, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// The sample name (a counter's ends with `_total`).
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
    }
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

pub static PROCESS_INFO: Family = gauge("kvscope_process_info", "A process under the shim (value 1): its rank, local rank, world size, run id, command and model.");
pub static PROCESS_START: Family = gauge(
    "kvscope_process_start_time_seconds",
    "When the shim started in the process, seconds since the Unix epoch.",
);
pub static STATE_AGE: Family = gauge(
    "kvscope_state_age_seconds",
    "Seconds since the process last wrote its state file.",
);
pub static STATE_ERRORS: Family = counter(
    "kvscope_state_write_errors_total",
    "State files the process could not write.",
);
pub static LIVE_BYTES: Family = gauge(
    "kvscope_live_bytes",
    "Bytes the process holds allocated on the device, by memory space (device, managed).",
);
pub static LIVE_ALLOCS: Family = gauge(
    "kvscope_live_allocations",
    "Allocations the process holds on the device, by memory space.",
);
pub static PEAK_BYTES: Family = gauge(
    "kvscope_peak_bytes",
    "The most bytes the process has held at once on the device, by memory space.",
);
pub static ALLOCS: Family = counter(
    "kvscope_allocations_total",
    "Successful allocation calls, by memory space.",
);
pub static FREES: Family = counter("kvscope_frees_total", "Free calls, by memory space.");
pub static RESERVED_BYTES: Family = gauge(
    "kvscope_reserved_bytes",
    "Live device bytes plus what the process's stream-ordered pools keep free.",
);
pub static POOL_RESERVED: Family = gauge(
    "kvscope_pool_reserved_bytes",
    "Bytes the process's stream-ordered memory pools reserve on the device.",
);
pub static POOL_USED: Family = gauge(
    "kvscope_pool_used_bytes",
    "Bytes of the pools' reserve that allocations use.",
);
pub static FRAMEWORK_ALLOCATED: Family = gauge(
    "kvscope_framework_allocated_bytes",
    "The framework allocator's allocated bytes (PyTorch's memory_allocated), when reported.",
);
pub static FRAMEWORK_RESERVED: Family = gauge(
    "kvscope_framework_reserved_bytes",
    "The framework allocator's reserved bytes (PyTorch's memory_reserved), when reported.",
);
pub static VMM_PHYSICAL_DEVICE: Family = gauge(
    "kvscope_vmm_physical_bytes",
    "Physical memory the process created with cuMemCreate on the device and has not released.",
);
pub static DEVICE_TOTAL: Family = gauge(
    "kvscope_device_total_bytes",
    "The device's memory size, as the driver says.",
);
pub static DEVICE_USED: Family = gauge("kvscope_device_used_bytes", "Device memory in use by every process and context (total minus free), as the driver last said.");
pub static PHASE_BYTES: Family = gauge("kvscope_phase_live_bytes", "Live device bytes by the phase (marker) they were allocated in; weights, KV cache and the rest when the program marks them.");
pub static FAILURES: Family = counter(
    "kvscope_failures_total",
    "Failed allocation calls of the process, by entry point and CUDA error.",
);
pub static HOST_PINNED: Family = gauge(
    "kvscope_host_pinned_bytes",
    "Pinned host memory the process holds (cudaMallocHost and friends).",
);
pub static VMM_RESERVED: Family = gauge(
    "kvscope_vmm_reserved_bytes",
    "Virtual address space the process reserved with cuMemAddressReserve.",
);
pub static VMM_MAPPED: Family = gauge(
    "kvscope_vmm_mapped_bytes",
    "Bytes the process mapped into reserved address space.",
);
pub static EXPORTER_PROCESSES: Family = gauge(
    "kvscope_exporter_processes",
    "Live processes the exporter found in the state directory.",
);
pub static EXPORTER_STALE: Family = gauge(
    "kvscope_exporter_stale_files",
    "State files of processes that died without removing them, seen at this scrape.",
);
pub static EXPORTER_SCAN: Family = gauge(
    "kvscope_exporter_scan_duration_seconds",
    "How long reading the state directory took for this scrape.",
);

/// Every family, in the order the page lists them.
pub static FAMILIES: &[&Family] = &[
    &PROCESS_INFO,
    &PROCESS_START,
    &STATE_AGE,
    &STATE_ERRORS,
    &LIVE_BYTES,
    &LIVE_ALLOCS,
    &PEAK_BYTES,
    &ALLOCS,
    &FREES,
    &RESERVED_BYTES,
    &POOL_RESERVED,
    &POOL_USED,
    &FRAMEWORK_ALLOCATED,
    &FRAMEWORK_RESERVED,
    &VMM_PHYSICAL_DEVICE,
    &DEVICE_TOTAL,
    &DEVICE_USED,
    &PHASE_BYTES,
    &FAILURES,
    &HOST_PINNED,
    &VMM_RESERVED,
    &VMM_MAPPED,
    &EXPORTER_PROCESSES,
    &EXPORTER_STALE,
    &EXPORTER_SCAN,
];

/// Every label name the exporter uses (the drift test holds the page and
/// docs/metrics.md to it).
#[cfg_attr(not(test), allow(dead_code))]
pub const LABELS: &[&str] = &[
    "pid",
    "Hostname",
    "UUID",
    "cuda_device",
    "model_name",
    "space",
    "phase",
    "api",
    "code",
    "rank",
    "local_rank",
    "world_size",
    "run_id",
    "command",
];

/// Label names and values, in the order they are printed.
pub type Label = (&'static str, String);
pub type Labels = Vec<Label>;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub family: &'static Family,
    pub labels: Labels,
    pub value: f64,
}

/// What the exporter adds to what the states say.
pub struct Context<'a> {
    /// `Hostname` for a state without one, and for the exporter's own series
    /// (`--hostname`, else the exporter's host name).
    pub hostname: &'a str,
    /// Whether `--hostname` was given: it then wins over each state's own.
    pub hostname_forced: bool,
    /// `model_name` for a process that did not name its model.
    pub model_name: Option<&'a str>,
    pub now_unix_ms: u64,
    pub scan_seconds: f64,
}

fn opt(v: Option<u32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The samples of every family for one scan.
pub fn collect(scan: &Scan, cx: &Context) -> Vec<Sample> {
    let mut out = Vec::new();
    for s in &scan.live {
        process(s, cx, &mut out);
    }
    let host = vec![("Hostname", cx.hostname.to_string())];
    let mut own = |family, value| {
        out.push(Sample {
            family,
            labels: host.clone(),
            value,
        })
    };
    own(&EXPORTER_PROCESSES, scan.live.len() as f64);
    own(&EXPORTER_STALE, scan.stale as f64);
    own(&EXPORTER_SCAN, cx.scan_seconds);
    out
}

fn process(s: &State, cx: &Context, out: &mut Vec<Sample>) {
    let hostname = match (&s.hostname, cx.hostname_forced) {
        (Some(h), false) => h.clone(),
        _ => cx.hostname.to_string(),
    };
    let model = s.model_name.as_deref().or(cx.model_name);
    let mut base = vec![("pid", s.pid.to_string()), ("Hostname", hostname)];
    if let Some(m) = model {
        base.push(("model_name", m.to_string()));
    }
    let mut push = |family, labels: Labels, value: f64| {
        out.push(Sample {
            family,
            labels,
            value,
        })
    };
    let with = |extra: &[(&'static str, String)]| {
        let mut l = base.clone();
        l.extend(extra.iter().cloned());
        l
    };
    push(
        &PROCESS_INFO,
        with(&[
            ("rank", opt(s.rank)),
            ("local_rank", opt(s.local_rank)),
            ("world_size", opt(s.world_size)),
            ("run_id", s.run_id.clone().unwrap_or_default()),
            ("command", s.command.clone()),
        ]),
        1.0,
    );
    push(
        &PROCESS_START,
        base.clone(),
        s.start_unix_ms as f64 / 1000.0,
    );
    let age = cx.now_unix_ms.saturating_sub(s.written_unix_ms) as f64 / 1000.0;
    push(&STATE_AGE, base.clone(), age);
    push(&STATE_ERRORS, base.clone(), s.write_errors as f64);
    push(&HOST_PINNED, base.clone(), s.host.live_bytes as f64);
    push(&VMM_RESERVED, base.clone(), s.vmm.reserved_bytes as f64);
    push(&VMM_MAPPED, base.clone(), s.vmm.mapped_bytes as f64);
    for f in &s.failures {
        let code = if f.code_name.is_empty() || f.code_name == "other" {
            f.code.to_string()
        } else {
            f.code_name.clone()
        };
        push(
            &FAILURES,
            with(&[("api", f.api.clone()), ("code", code)]),
            f.count as f64,
        );
    }
    for d in &s.devices {
        device(d, &with, &mut push);
    }
}

fn device(
    d: &DeviceState,
    with: &dyn Fn(&[Label]) -> Labels,
    push: &mut dyn FnMut(&'static Family, Labels, f64),
) {
    let mut dev = vec![("UUID", d.uuid.clone().unwrap_or_default())];
    dev.push(("cuda_device", d.device.to_string()));
    let labels = |extra: &[(&'static str, String)]| {
        let mut l = dev.clone();
        l.extend(extra.iter().cloned());
        with(&l)
    };
    for (space, st) in [("device", &d.memory), ("managed", &d.managed)] {
        if space == "managed" && *st == SpaceState::default() {
            continue; // most processes never use managed memory
        }
        let l = labels(&[("space", space.to_string())]);
        push(&LIVE_BYTES, l.clone(), st.live_bytes as f64);
        push(&LIVE_ALLOCS, l.clone(), st.live_count as f64);
        push(&PEAK_BYTES, l.clone(), st.peak_bytes as f64);
        push(&ALLOCS, l.clone(), st.allocs as f64);
        push(&FREES, l, st.frees as f64);
    }
    let l = labels(&[]);
    push(&RESERVED_BYTES, l.clone(), d.reserved_bytes as f64);
    push(&POOL_RESERVED, l.clone(), d.pool_reserved_bytes as f64);
    push(&POOL_USED, l.clone(), d.pool_used_bytes as f64);
    push(&VMM_PHYSICAL_DEVICE, l.clone(), d.vmm_physical_bytes as f64);
    let optional = [
        (&FRAMEWORK_ALLOCATED, d.framework_allocated_bytes),
        (&FRAMEWORK_RESERVED, d.framework_reserved_bytes),
        (&DEVICE_TOTAL, d.total_bytes),
        (&DEVICE_USED, d.used_bytes),
    ];
    for (family, v) in optional {
        if let Some(v) = v {
            push(family, l.clone(), v as f64);
        }
    }
    for (phase, bytes) in phase_series(&d.phases) {
        push(&PHASE_BYTES, labels(&[("phase", phase)]), bytes as f64);
    }
}

/// Live bytes by phase label, the phases opened by a request's start or end
/// folded into one `requests`: their labels carry request ids, and a series
/// per request would grow without bound over a server's life.
fn phase_series(phases: &[crate::report::state::PhaseBytes]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for p in phases {
        let name = if is_request(&p.phase) {
            "requests"
        } else {
            p.phase.as_str()
        };
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, b)) => *b += p.bytes,
            None => out.push((name.to_string(), p.bytes)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::state::PhaseBytes;

    /// Request markers carry ids: their phases are one `requests` series,
    /// so a server's life does not add a series per request.
    #[test]
    fn phases_opened_by_requests_are_one_series() {
        let phase = |label: &str, bytes| PhaseBytes {
            phase: label.into(),
            bytes,
            count: 1,
        };
        let phases = [
            phase("load", 100),
            phase("serve", 10),
            phase("request d0 start tokens=8", 1),
            phase("request d0 done", 2),
            phase("request 7f3a start", 4),
            phase("kv_cache", 50),
        ];
        assert_eq!(
            phase_series(&phases),
            [
                ("load".to_string(), 100),
                ("serve".to_string(), 10),
                ("requests".to_string(), 7),
                ("kv_cache".to_string(), 50),
            ]
        );
    }
}
