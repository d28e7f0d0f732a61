//! The one background thread: every KVSCOPE_SAMPLE_MS it adds a point to
//! the timeline (live and reserved bytes per device, device used memory when
//! the driver can be asked), notices idleness, applies markers and dump
//! requests sent from outside (`kvscope mark` / `kvscope dump`), and writes
//! checkpoints. A marker adds a point at once, from the marking thread.
//!
//! Bounded memory: when the timeline holds KVSCOPE_TIMELINE_POINTS points,
//! neighbouring periodic points merge pairwise (keeping the later values and
//! the higher max_live_bytes), halving the resolution of the past. Marker
//! points never merge.

use super::counters::{self, lane};
use super::devices::DeviceInfo;
use super::markers::Source;
use super::state::Shim;
use super::{clock, query, writer};
use crate::report::{control, DeviceSample, PoolStats, Sample, Space};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Mutex;
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Debug)]
struct Point {
    ticks: u64,
    marker: Option<String>,
    devices: Vec<DeviceSample>,
}

#[derive(Clone, Copy, Debug)]
struct PoolPoint {
    device: u32,
    default_pool: bool,
    attrs: query::PoolAttrs,
    ticks: u64,
}

struct State {
    points: Vec<Point>,
    pools: BTreeMap<u64, PoolPoint>,
    device_used: BTreeMap<u32, u64>,
}

pub struct Timeline {
    cap: usize,
    state: Mutex<State>,
}

impl Timeline {
    pub fn new(cap: usize) -> Timeline {
        Timeline {
            cap,
            state: Mutex::new(State {
                points: Vec::new(),
                pools: BTreeMap::new(),
                device_used: BTreeMap::new(),
            }),
        }
    }

    fn push(&self, p: Point) {
        let Ok(mut s) = self.state.lock() else { return };
        if s.points.len() >= self.cap {
            s.points = downsample(std::mem::take(&mut s.points));
        }
        s.points.push(p);
    }

    pub fn points(&self, scale: &clock::Scale) -> Vec<Sample> {
        let Ok(s) = self.state.lock() else {
            return Vec::new();
        };
        s.points
            .iter()
            .map(|p| Sample {
                t_ms: scale.ms(p.ticks),
                marker: p.marker.clone(),
                devices: p.devices.clone(),
            })
            .collect()
    }

    pub fn pools(&self, scale: &clock::Scale) -> Vec<PoolStats> {
        let Ok(s) = self.state.lock() else {
            return Vec::new();
        };
        s.pools
            .iter()
            .map(|(&handle, p)| PoolStats {
                device: p.device,
                handle,
                default_pool: p.default_pool,
                reserved_bytes: p.attrs.reserved,
                used_bytes: p.attrs.used,
                reserved_high_bytes: p.attrs.reserved_high,
                used_high_bytes: p.attrs.used_high,
                release_threshold: p.attrs.release_threshold,
                sampled_t_ms: scale.ms(p.ticks),
            })
            .collect()
    }

    /// Devices the sampler has figures for.
    pub fn devices(&self) -> Vec<u32> {
        self.state
            .lock()
            .map(|s| s.device_used.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// Merges neighbouring periodic points pairwise; marker points stay.
fn downsample(points: Vec<Point>) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::with_capacity(points.len() / 2 + 1);
    let mut pending: Option<Point> = None;
    for p in points {
        if p.marker.is_some() {
            if let Some(q) = pending.take() {
                out.push(q);
            }
            out.push(p);
            continue;
        }
        match pending.take() {
            None => pending = Some(p),
            Some(q) => out.push(merge(q, p)),
        }
    }
    out.extend(pending);
    out
}

fn merge(older: Point, mut newer: Point) -> Point {
    for d in &mut newer.devices {
        if let Some(o) = older.devices.iter().find(|o| o.device == d.device) {
            d.max_live_bytes = d.max_live_bytes.max(o.max_live_bytes);
        }
    }
    newer
}

/// A timeline point now. `query`: also ask the driver (sampler thread only).
pub fn sample(shim: &Shim, marker: Option<String>, query_driver: bool) {
    let now = clock::ticks();
    let devices = shim.devices.seen();
    if query_driver && shim.config.device_query {
        refresh_driver_figures(shim, &devices, now);
    }
    let Ok(st) = shim.timeline.state.lock() else {
        return;
    };
    let samples = devices
        .iter()
        .map(|&d| {
            let t = counters::fold(lane(Space::Device, d));
            let pools: Vec<_> = st.pools.values().filter(|p| p.device == d).collect();
            // Pool memory freed but kept: reserved beyond what the pool's blocks use.
            let reserved = (!pools.is_empty()).then(|| {
                t.live_bytes()
                    + pools
                        .iter()
                        .map(|p| p.attrs.reserved.saturating_sub(p.attrs.used))
                        .sum::<u64>()
            });
            DeviceSample {
                device: d,
                live_bytes: t.live_bytes(),
                live_count: t.live_count(),
                max_live_bytes: t.live_bytes(),
                reserved_bytes: reserved.or(Some(t.live_bytes())),
                device_used_bytes: st.device_used.get(&d).copied(),
            }
        })
        .collect();
    drop(st);
    shim.timeline.push(Point {
        ticks: now,
        marker,
        devices: samples,
    });
}

fn refresh_driver_figures(shim: &Shim, devices: &[u32], now: u64) {
    let mut used = BTreeMap::new();
    for &d in devices {
        let mut info = shim.devices.info(d);
        if info.total_bytes.is_none() {
            info.total_bytes = query::total_mem(d);
        }
        if let Some((free, total)) = query::mem_info(d) {
            info = DeviceInfo {
                total_bytes: Some(total),
                free_bytes: Some(free),
                sampled_ticks: now,
            };
            used.insert(d, total.saturating_sub(free));
        }
        shim.devices.set_info(d, info);
    }
    if let Ok(mut st) = shim.timeline.state.lock() {
        st.device_used.extend(used);
    }
    refresh_pools(shim, now);
}

/// The last point, at exit: device totals (no context needed) and, for the
/// exiting thread's device, free memory, when the driver still answers.
pub fn final_sample(shim: &Shim) {
    if shim.config.device_query {
        let now = clock::ticks();
        for d in shim.devices.seen() {
            let mut info = shim.devices.info(d);
            if info.total_bytes.is_none() {
                info.total_bytes = query::total_mem(d);
            }
            shim.devices.set_info(d, info);
        }
        if let Some((free, total)) = query::mem_info_current() {
            let d = super::tls::device();
            shim.devices.set_info(
                d,
                DeviceInfo {
                    total_bytes: Some(total),
                    free_bytes: Some(free),
                    sampled_ticks: now,
                },
            );
            if let Ok(mut st) = shim.timeline.state.lock() {
                st.device_used.insert(d, total.saturating_sub(free));
            }
        }
        refresh_pools(shim, now);
    }
    sample(shim, None, false);
}

/// Pool attributes need no context: safe from any thread.
pub fn refresh_pools(shim: &Shim, now: u64) {
    let pools: Vec<_> = shim
        .devices
        .pools()
        .into_iter()
        .filter_map(|p| {
            query::pool_attrs(p.handle).map(|attrs| {
                (
                    p.handle,
                    PoolPoint {
                        device: p.device,
                        default_pool: p.default_pool,
                        attrs,
                        ticks: now,
                    },
                )
            })
        })
        .collect();
    if let Ok(mut st) = shim.timeline.state.lock() {
        st.pools.extend(pools);
    }
}

/// Applies requests left in our control directory: `*.mark` files hold a
/// label, `*.dump` files a reason. Each is removed once applied.
fn poll_requests(shim: &Shim) {
    // SAFETY: getpid has no preconditions.
    let dir = control::dir_for(unsafe { libc::getpid() } as u32);
    let base_ok = std::fs::symlink_metadata(control::base_dir())
        .is_ok_and(|m| m.is_dir() && control::trusted(&m));
    let dir_ok = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && control::trusted(&m));
    if !base_ok || !dir_ok {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    // Plain files of this user only: never a symlink, never another user's.
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.path()
                .symlink_metadata()
                .is_ok_and(|m| m.is_file() && m.uid() == control::uid())
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        apply_request(shim, &f);
    }
}

fn apply_request(shim: &Shim, f: &Path) {
    let kind = f.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(kind, "mark" | "dump") {
        return;
    }
    let text = std::fs::read_to_string(f).unwrap_or_default();
    let text = text.trim();
    let _ = std::fs::remove_file(f);
    match kind {
        "mark" => {
            let label = if text.is_empty() { "mark" } else { text };
            let m = shim.markers.add(label, Source::External);
            sample(shim, Some(m.label), false);
        }
        _ => {
            writer::write_dump(
                shim,
                Some(if text.is_empty() {
                    "external request".into()
                } else {
                    text.to_string()
                }),
            );
        }
    }
}

fn total_calls() -> u64 {
    counters::calls().iter().sum()
}

fn run(shim: &'static Shim) {
    let period = Duration::from_millis(shim.config.sample_ms.max(1));
    let scale_ms = |ticks: u64| clock::Scale::now().ms(ticks);
    let mut last_calls = total_calls();
    let mut last_change = clock::ticks();
    let mut idle_marked = false;
    let mut last_checkpoint = clock::ticks();
    let mut checkpoint_calls = last_calls;
    while !STOP.load(Acquire) {
        std::thread::sleep(period);
        if STOP.load(Acquire) {
            break;
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let now = clock::ticks();
            let calls = total_calls();
            if calls != last_calls {
                last_calls = calls;
                last_change = now;
                idle_marked = false;
            } else if shim.config.idle_ms > 0
                && !idle_marked
                && calls > 0
                && scale_ms(now) - scale_ms(last_change) >= shim.config.idle_ms as f64
            {
                idle_marked = true;
                let m = shim.markers.add("idle", Source::Auto);
                sample(shim, Some(m.label), false);
            }
            sample(shim, None, true);
            poll_requests(shim);
            if shim.config.checkpoint_s > 0
                && calls != checkpoint_calls
                && scale_ms(now) - scale_ms(last_checkpoint)
                    >= shim.config.checkpoint_s as f64 * 1000.0
            {
                checkpoint_calls = calls;
                last_checkpoint = now;
                writer::write_checkpoint(shim);
            }
        }));
    }
}

pub fn spawn(shim: &'static Shim) {
    if shim.config.sample_ms == 0 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("kvscope-sampler".into())
        .stack_size(256 << 10)
        .spawn(move || run(shim));
    if spawned.is_err() {
        shim.log("could not start the sampler thread; no timeline");
    }
}

pub fn stop() {
    STOP.store(true, Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: u64, live: u64, marker: Option<&str>) -> Point {
        Point {
            ticks: t,
            marker: marker.map(String::from),
            devices: vec![DeviceSample {
                device: 0,
                live_bytes: live,
                max_live_bytes: live,
                ..DeviceSample::default()
            }],
        }
    }

    #[test]
    fn downsampling_halves_periodic_points_and_keeps_markers_and_spikes() {
        let mut pts: Vec<Point> = (0..8)
            .map(|i| point(i, if i == 2 { 900 } else { 100 + i }, None))
            .collect();
        pts.insert(4, point(4, 50, Some("serve")));
        let out = downsample(pts);
        let markers: Vec<_> = out.iter().filter_map(|p| p.marker.clone()).collect();
        assert_eq!(markers, ["serve"]);
        assert_eq!(out.len(), 1 + 4, "8 periodic points become 4");
        // The spike at point 2 survives in max_live_bytes of its merged point.
        assert_eq!(
            out.iter().map(|p| p.devices[0].max_live_bytes).max(),
            Some(900)
        );
        // Later values win: the merged point of (2, 3) says live 103.
        assert_eq!(out[1].devices[0].live_bytes, 103);
    }

    #[test]
    fn the_timeline_stays_within_its_bound() {
        let t = Timeline::new(16);
        for i in 0..10_000 {
            t.push(point(i, i, if i % 1000 == 0 { Some("m") } else { None }));
        }
        let n = t.state.lock().unwrap().points.len();
        assert!(n <= 16 + 10, "{n} points kept");
    }
}
