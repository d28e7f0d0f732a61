//! Turns the shim's live state into a `Report`. Runs off the hot path: when
//! a report is written.

use super::counters::{self, lane, LaneTotals};
use super::events::EventRec;
use super::markers::phase_of;
use super::state::{Shim, MODE_PLUGGABLE, MODE_PRELOAD};
use super::{clock, failures};
use crate::report::*;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

/// The failure an OOM post-mortem is about, and what the driver said after it.
pub struct OomInput {
    pub ticks: u64,
    pub api: Api,
    pub device: u32,
    pub size: u64,
    pub code: i32,
    pub thread: u32,
    pub mem_info: Option<(u64, u64)>,
}

fn launch_number(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.trim().parse().ok()
}

pub fn process() -> Process {
    let cmdline = std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Process {
        // SAFETY: getpid/getppid have no preconditions.
        pid: unsafe { libc::getpid() } as u32,
        ppid: unsafe { libc::getppid() } as u32,
        cmdline,
        exe: std::fs::read_link("/proc/self/exe")
            .ok()
            .map(|p| p.display().to_string()),
        hostname: hostname(),
        start_unix_ms: clock::start_unix_ms(),
        launch: Launch {
            rank: launch_number("RANK"),
            local_rank: launch_number("LOCAL_RANK"),
            world_size: launch_number("WORLD_SIZE"),
            visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        },
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("KVSCOPE_"))
            .collect(),
    }
}

pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    if unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn space_stats(t: LaneTotals, scale: &clock::Scale) -> SpaceStats {
    SpaceStats {
        live_bytes: t.live_bytes(),
        live_count: t.live_count(),
        peak_bytes: t.peak_bytes,
        peak_t_ms: (t.peak_bytes > 0).then(|| scale.ms(t.peak_ticks)),
        allocated_bytes: t.alloc_bytes,
        allocs: t.allocs,
        freed_bytes: t.freed_bytes,
        frees: t.frees,
        failures: t.failures,
    }
}

fn size_classes(rows: &[LiveAlloc]) -> Vec<SizeClass> {
    let mut classes: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for r in rows {
        let k = 63 - r.size.max(1).leading_zeros();
        let c = classes.entry(k).or_default();
        c.0 += 1;
        c.1 += r.size;
    }
    classes
        .into_iter()
        .map(|(k, (count, bytes))| SizeClass {
            min_bytes: if k == 0 { 0 } else { 1 << k },
            max_bytes: if k >= 63 {
                u64::MAX
            } else {
                (1u64 << (k + 1)) - 1
            },
            count,
            bytes,
        })
        .collect()
}

/// Count and bytes of `rows` grouped by `key`, largest first.
fn group<K: Ord>(rows: &[LiveAlloc], key: impl Fn(&LiveAlloc) -> Option<K>) -> Vec<(K, u64, u64)> {
    let mut groups: BTreeMap<K, (u64, u64)> = BTreeMap::new();
    for r in rows {
        if let Some(k) = key(r) {
            let g = groups.entry(k).or_default();
            g.0 += 1;
            g.1 += r.size;
        }
    }
    let mut v: Vec<_> = groups.into_iter().map(|(k, (n, b))| (k, n, b)).collect();
    v.sort_by_key(|g| std::cmp::Reverse(g.2));
    v
}

fn by_kind(rows: &[LiveAlloc]) -> Vec<KindTotal> {
    group(rows, |r| Some((r.device, r.api)))
        .into_iter()
        .map(|((device, api), count, bytes)| KindTotal {
            device,
            space: Some(api.space()),
            api: api.name().into(),
            count,
            bytes,
        })
        .collect()
}

fn by_stream(rows: &[LiveAlloc]) -> Vec<StreamTotal> {
    group(rows, |r| {
        (r.api.space() == Space::Device).then_some((r.device, r.stream))
    })
    .into_iter()
    .map(|((device, stream), count, bytes)| StreamTotal {
        device,
        stream,
        count,
        bytes,
    })
    .collect()
}

fn event(e: &EventRec, scale: &clock::Scale) -> Event {
    Event {
        t_ms: scale.ms(e.ticks),
        op: e.op.name().into(),
        api: e.api.name().into(),
        device: e.device,
        address: e.address,
        size: e.size,
        code: e.code,
        thread: e.thread,
    }
}

/// The last `n` allocation events of all threads, oldest first.
pub fn recent_events(n: usize) -> Vec<EventRec> {
    let mut all = Vec::new();
    for b in counters::blocks() {
        b.ring.collect(&mut all);
    }
    all.sort_by_key(|e| e.ticks);
    let skip = all.len().saturating_sub(n);
    all.split_off(skip)
}

pub fn build(
    shim: &Shim,
    reason: Reason,
    detail: Option<String>,
    oom: Option<&OomInput>,
    out_dir: (String, Option<String>),
) -> Report {
    let scale = clock::Scale::now();
    let markers = shim.markers.all();
    let mut marker_ticks: Vec<u64> = markers.iter().map(|m| m.ticks).collect();
    marker_ticks.sort_unstable();

    let entries = shim.table.snapshot();
    let vmm = shim.vmm.snapshot();
    let mut rows: Vec<LiveAlloc> = entries
        .iter()
        .map(|e| LiveAlloc {
            device: e.device(),
            address: e.address,
            size: e.size(),
            api: e.api(),
            stream: e.stream,
            t_ms: scale.ms(e.ticks),
            seq: e.seq(),
            thread: e.thread(),
            phase: phase_of(&marker_ticks, e.ticks),
        })
        .collect();
    rows.extend(vmm.handles.iter().map(|(handle, h, va)| LiveAlloc {
        device: h.device,
        address: va.unwrap_or(*handle),
        size: h.size,
        api: Api::CuMemCreate,
        stream: 0,
        t_ms: scale.ms(h.ticks),
        seq: h.seq,
        thread: h.thread,
        phase: phase_of(&marker_ticks, h.ticks),
    }));
    rows.sort_unstable_by(|a, b| b.size.cmp(&a.size).then(a.t_ms.total_cmp(&b.t_ms)));

    let mut devices: Vec<u32> = shim.devices.seen();
    for d in shim.timeline.devices() {
        if !devices.contains(&d) {
            devices.push(d);
        }
    }
    devices.sort_unstable();
    let device_stats = devices
        .iter()
        .map(|&d| {
            let info = shim.devices.info(d);
            DeviceStats {
                device: d,
                total_bytes: info.total_bytes,
                free_bytes: info.free_bytes,
                free_sampled_t_ms: info.free_bytes.map(|_| scale.ms(info.sampled_ticks)),
                memory: space_stats(counters::fold(lane(Space::Device, d)), &scale),
                managed: space_stats(counters::fold(lane(Space::Managed, d)), &scale),
            }
        })
        .collect();

    let called: Vec<(Api, u64)> = counters::calls()
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .filter_map(|(i, &n)| Api::from_u8(i as u8).map(|a| (a, n)))
        .collect();
    // The calls show the modes, so the hot path notes nothing (kvscope_init notes pluggable).
    let mut modes = shim.modes.load(Relaxed);
    for (a, _) in &called {
        modes |= if a.pluggable() {
            MODE_PLUGGABLE
        } else {
            MODE_PRELOAD
        };
    }
    let calls = called
        .iter()
        .map(|(a, n)| (a.name().to_string(), *n))
        .collect();
    let (fail_counts, fail_list) = shim.failures.snapshot();
    let mut failure_counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for ((api, code), n) in fail_counts {
        failure_counts
            .entry(api.name().into())
            .or_default()
            .insert(code.to_string(), n);
    }
    let failures = fail_list.iter().map(|f: &failures::FailureRec| Failure {
        t_ms: scale.ms(f.ticks),
        api: f.api.name().into(),
        device: f.device,
        size: f.size,
        code: f.code,
        code_name: error_name(f.code).into(),
        thread: f.thread,
    });

    let a = &shim.anomalies;
    let mut notes = Vec::new();
    let replaced = a.replaced.load(Relaxed);
    if replaced > 0 {
        notes.push(format!(
            "{replaced} allocations reused an address still live in the table (a free went unseen)"
        ));
    }
    let panics = a.panics.load(Relaxed);
    if panics > 0 {
        notes.push(format!(
            "{panics} internal errors were caught in the shim; the calls passed through"
        ));
    }

    let oom = oom.map(|o| {
        let on_device: Vec<LiveAlloc> = rows
            .iter()
            .filter(|r| r.device == o.device && r.api.space() == Space::Device)
            .cloned()
            .collect();
        Oom {
            t_ms: scale.ms(o.ticks),
            api: o.api.name().into(),
            device: o.device,
            size: o.size,
            code: o.code,
            thread: o.thread,
            device_free_bytes: o.mem_info.map(|m| m.0),
            device_total_bytes: o.mem_info.map(|m| m.1),
            live_bytes: on_device.iter().map(|r| r.size).sum(),
            live_count: on_device.len() as u64,
            largest: on_device.into_iter().take(20).collect(),
        }
    });

    let live_count = rows.len() as u64;
    let live_bytes = rows.iter().map(|r| r.size).sum();
    let by_kind = by_kind(&rows);
    let by_stream = by_stream(&rows);
    let by_size_class = size_classes(&rows);
    let truncated = rows.len() > shim.config.live_limit;
    rows.truncate(shim.config.live_limit);

    Report {
        schema: SCHEMA.into(),
        reason: Some(reason),
        reason_detail: detail,
        modes: [(MODE_PRELOAD, "preload"), (MODE_PLUGGABLE, "pluggable")]
            .iter()
            .filter(|(m, _)| modes & m != 0)
            .map(|(_, n)| n.to_string())
            .collect(),
        process: process(),
        shim: ShimInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            sample_ms: shim.config.sample_ms,
            idle_ms: shim.config.idle_ms,
            event_capacity: shim.config.events as u64,
            live_limit: shim.config.live_limit as u64,
            failure_limit: failures::FAILURE_LIMIT as u64,
            out_dir: out_dir.0,
            out_dir_note: out_dir.1,
        },
        written_unix_ms: clock::unix_ms(),
        t_ms: scale.ms(clock::ticks()),
        devices: device_stats,
        host: space_stats(counters::fold(lane(Space::Host, 0)), &scale),
        calls,
        failure_counts,
        failures: failures.collect(),
        anomalies: Anomalies {
            untracked_frees: a.untracked_frees.load(Relaxed),
            double_frees: a.double_frees.load(Relaxed),
            size_mismatched_frees: a.size_mismatched_frees.load(Relaxed),
            unrouted_entry_points: shim.unrouted.lock().map(|u| u.clone()).unwrap_or_default(),
            notes,
        },
        live: Live {
            count: live_count,
            bytes: live_bytes,
            truncated,
            columns: LIVE_COLUMNS.iter().map(|c| c.to_string()).collect(),
            allocations: rows,
            by_kind,
            by_stream,
            by_size_class,
        },
        vmm: Vmm {
            reserved_bytes: vmm.reserved_bytes,
            physical_bytes: vmm.physical_bytes,
            mapped_bytes: vmm.mapped_bytes,
            reservations: vmm
                .reservations
                .iter()
                .map(|&(address, size, mapped_bytes)| VmmRange {
                    address,
                    size,
                    mapped_bytes,
                })
                .collect(),
            handles: vmm
                .handles
                .iter()
                .map(|(handle, h, _)| VmmHandle {
                    handle: *handle,
                    device: h.device,
                    size: h.size,
                    released: h.released,
                    mappings: h.maps,
                    t_ms: scale.ms(h.ticks),
                })
                .collect(),
        },
        pools: shim.timeline.pools(&scale),
        markers: markers
            .iter()
            .map(|m| Marker {
                t_ms: scale.ms(m.ticks),
                label: m.label.clone(),
                source: m.source.name().into(),
            })
            .collect(),
        timeline: shim.timeline.points(&scale),
        events: recent_events(shim.config.events)
            .iter()
            .map(|e| event(e, &scale))
            .collect(),
        oom,
    }
}
