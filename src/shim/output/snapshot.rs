//! Turns the shim's recorded state into a `Report`. Runs off the hot path:
//! when a report is written (by the background thread, a dump, the exit).

use super::callers;
use super::process::process;
use super::timeline::Timeline;
use crate::report::*;
use crate::shim::config::Config;
use crate::shim::track::counters::{self, lane, LaneTotals};
use crate::shim::track::events::EventRec;
use crate::shim::track::markers::phase_of;
use crate::shim::track::oom::Capture;
use crate::shim::track::table::Entry;
use crate::shim::track::{clock, failures, Tracker, MODE_PLUGGABLE, MODE_PRELOAD};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

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

/// Live memory per device and calling file, largest first.
fn by_caller(rows: &[LiveAlloc], sites: &[CallSite]) -> Vec<CallerTotal> {
    let file = |c: Option<u32>| {
        c.and_then(|i| sites.get(i as usize))
            .map_or("?", |s| s.file_name())
    };
    group(rows, |r| Some((r.device, file(r.caller))))
        .into_iter()
        .map(|((device, caller), count, bytes)| CallerTotal {
            device,
            caller: caller.into(),
            count,
            bytes,
        })
        .collect()
}

fn event(e: &EventRec, scale: &clock::Scale, ix: &mut callers::Index) -> Event {
    Event {
        t_ms: scale.ms(e.ticks),
        op: e.op.name().into(),
        api: e.api.name().into(),
        device: e.device,
        address: e.address,
        size: e.size,
        code: e.code,
        thread: e.thread,
        caller: ix.of(e.caller),
    }
}

/// A live allocation as a report row.
fn row(
    e: &Entry,
    scale: &clock::Scale,
    marker_ticks: &[u64],
    ix: &mut callers::Index,
) -> LiveAlloc {
    LiveAlloc {
        device: e.device(),
        address: e.address,
        size: e.size(),
        api: e.api(),
        stream: e.stream,
        t_ms: scale.ms(e.ticks),
        seq: e.seq(),
        thread: e.thread(),
        phase: phase_of(marker_ticks, e.ticks),
        caller: ix.of(e.caller),
    }
}

/// The stacks of big live allocations, largest first.
fn stacks(track: &Tracker, ix: &mut callers::Index) -> Vec<StackRow> {
    let mut kept = track.stacks.snapshot();
    if kept.is_empty() {
        return Vec::new();
    }
    kept.sort_by_key(|(a, s)| (std::cmp::Reverse(s.size), *a));
    let own = callers::own_file();
    kept.iter()
        .map(|(address, s)| StackRow {
            device: s.device,
            address: *address,
            size: s.size,
            frames: callers::foreign_frames(ix, s.frames(), &own),
        })
        .collect()
}

/// What a report is built from.
pub struct Sources<'a> {
    pub config: &'a Config,
    pub track: &'a Tracker,
    pub timeline: &'a Timeline,
}

/// The post-mortem section, from what the failing thread captured.
fn oom_section(
    c: &Capture,
    scale: &clock::Scale,
    marker_ticks: &[u64],
    ix: &mut callers::Index,
) -> Oom {
    let f = &c.failure;
    Oom {
        t_ms: scale.ms(f.ticks),
        api: f.api.name().into(),
        device: f.device,
        size: f.size,
        code: f.code,
        thread: f.thread,
        device_free_bytes: c.mem_info.map(|m| m.0),
        device_total_bytes: c.mem_info.map(|m| m.1),
        live_bytes: c.live_bytes,
        live_count: c.live_count,
        largest: c
            .largest
            .iter()
            .map(|e| row(e, scale, marker_ticks, ix))
            .collect(),
    }
}

pub fn build(
    src: &Sources,
    reason: Reason,
    detail: Option<String>,
    oom: Option<&Capture>,
    out_dir: (String, Option<String>),
) -> Report {
    let Sources {
        config,
        track,
        timeline,
    } = *src;
    let scale = clock::Scale::now();
    let markers = track.markers.all();
    let mut marker_ticks: Vec<u64> = markers.iter().map(|m| m.ticks).collect();
    marker_ticks.sort_unstable();

    let vmm = track.vmm.snapshot();
    let mut ix = callers::Index::default();
    let mut rows: Vec<LiveAlloc> = track
        .table
        .snapshot()
        .iter()
        .map(|e| row(e, &scale, &marker_ticks, &mut ix))
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
        caller: ix.of(h.caller),
    }));
    rows.sort_unstable_by(|a, b| b.size.cmp(&a.size).then(a.t_ms.total_cmp(&b.t_ms)));

    // A post-mortem shows the events up to the failure, as captured then.
    let events: Vec<Event> = match oom {
        Some(c) => c.events.iter().map(|e| event(e, &scale, &mut ix)).collect(),
        None => counters::recent_events(config.events)
            .iter()
            .map(|e| event(e, &scale, &mut ix))
            .collect(),
    };
    let (fail_counts, fail_list) = track.failures.snapshot();
    // Read after the rows, events and failures: a device is marked seen
    // before anything of it is recorded, so all of those have their device.
    let mut devices: Vec<u32> = track.devices.seen();
    for d in timeline.devices() {
        if !devices.contains(&d) {
            devices.push(d);
        }
    }
    devices.sort_unstable();
    let device_stats = devices
        .iter()
        .map(|&d| {
            let info = track.devices.info(d);
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
    let mut modes = track.modes();
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
    let mut failure_counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for ((api, code), n) in fail_counts {
        failure_counts
            .entry(api.name().into())
            .or_default()
            .insert(code.to_string(), n);
    }
    let failures = fail_list.iter().map(|f: &failures::Failure| Failure {
        t_ms: scale.ms(f.ticks),
        api: f.api.name().into(),
        device: f.device,
        size: f.size,
        code: f.code,
        code_name: error_name(f.code).into(),
        thread: f.thread,
    });

    let a = &track.anomalies;
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

    let out_of_memory = track.oom.history().map(|h| OomHistory {
        failures: h.failures,
        first_t_ms: scale.ms(h.first_ticks),
        allocations_after: h.allocs_after,
        recovered: h.allocs_after > 0,
    });
    let oom = oom.map(|c| oom_section(c, &scale, &marker_ticks, &mut ix));
    let stacks = stacks(track, &mut ix);

    let live_count = rows.len() as u64;
    let live_bytes = rows.iter().map(|r| r.size).sum();
    let by_kind = by_kind(&rows);
    let by_stream = by_stream(&rows);
    let by_size_class = size_classes(&rows);
    let by_caller = by_caller(&rows, &ix.sites);
    let truncated = rows.len() > config.live_limit;
    rows.truncate(config.live_limit);

    Report {
        schema: SCHEMA.into(),
        reason: Some(reason),
        reason_detail: detail,
        modes: [(MODE_PRELOAD, "preload"), (MODE_PLUGGABLE, "pluggable")]
            .iter()
            .filter(|(m, _)| modes & m != 0)
            .map(|(_, n)| n.to_string())
            .collect(),
        process: process(config),
        shim: ShimInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            sample_ms: config.sample_ms,
            idle_ms: config.idle_ms,
            event_capacity: config.events as u64,
            live_limit: config.live_limit as u64,
            failure_limit: failures::FAILURE_LIMIT as u64,
            stack_min: config.stack_min,
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
            unrouted_entry_points: track.unrouted(),
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
            by_caller,
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
        pools: timeline.pools(&scale),
        markers: markers
            .iter()
            .map(|m| Marker {
                t_ms: scale.ms(m.ticks),
                label: m.label.clone(),
                source: m.source.name().into(),
            })
            .collect(),
        timeline: timeline.points(&scale),
        events,
        oom,
        out_of_memory,
        callers: ix.sites,
        stacks,
    }
}
