//! The timeline: every KVSCOPE_SAMPLE_MS the background thread adds a point
//! (live and reserved bytes per device, device used memory when the driver
//! can be asked); a marker adds a point at once, from the marking thread.
//! It also keeps the driver's latest figures for pools and devices.
//!
//! Bounded memory: when the timeline holds KVSCOPE_TIMELINE_POINTS points,
//! neighbouring periodic points merge pairwise (keeping the later values and
//! the higher max_live_bytes), halving the resolution of the past. Marker
//! points never merge.

use crate::report::{DeviceSample, FrameworkSample, PoolStats, Sample, Space};
use crate::shim::config::Config;
use crate::shim::cuda::driver::{self, PoolAttrs};
use crate::shim::track::counters::{self, lane};
use crate::shim::track::devices::{DeviceInfo, FrameworkCounters};
use crate::shim::track::{clock, tls, Tracker};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Clone, Debug)]
struct Point {
    ticks: u64,
    marker: Option<String>,
    devices: Vec<DeviceSample>,
    /// The framework's counters of each of `devices` (same order), with the
    /// time they were reported (converted to `t_ms` when a report is made).
    framework: Vec<Option<FrameworkCounters>>,
}

#[derive(Clone, Copy, Debug)]
struct PoolPoint {
    device: u32,
    default_pool: bool,
    attrs: PoolAttrs,
    ticks: u64,
}

struct State {
    points: Vec<Point>,
    pools: BTreeMap<u64, PoolPoint>,
    device_used: BTreeMap<u32, u64>,
}

/// The timeline and the driver's figures, with what sampling reads.
pub struct Timeline {
    config: &'static Config,
    track: &'static Tracker,
    cap: usize,
    state: Mutex<State>,
}

impl Timeline {
    pub fn new(config: &'static Config, track: &'static Tracker) -> Timeline {
        Timeline {
            config,
            track,
            cap: config.timeline_points,
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
                devices: p
                    .devices
                    .iter()
                    .enumerate()
                    .map(|(i, d)| DeviceSample {
                        framework: p
                            .framework
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|c| FrameworkSample {
                                allocated_bytes: c.allocated,
                                reserved_bytes: c.reserved,
                                sampled_t_ms: scale.ms(c.ticks),
                            }),
                        ..d.clone()
                    })
                    .collect(),
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

    /// A device's used memory (total − free) as the driver last said.
    pub fn device_used(&self, device: u32) -> Option<u64> {
        self.state.lock().ok()?.device_used.get(&device).copied()
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

impl Timeline {
    /// A timeline point now. `query`: also ask the driver (sampler thread only).
    pub fn sample(&self, marker: Option<String>, query_driver: bool) {
        let now = clock::observed();
        let devices = self.track.devices.seen();
        if query_driver && self.config.device_query {
            self.refresh_driver_figures(&devices, now);
        }
        let Ok(st) = self.state.lock() else {
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
                    framework: None,
                }
            })
            .collect();
        drop(st);
        let framework = devices
            .iter()
            .map(|&d| self.track.devices.framework(d))
            .collect();
        self.push(Point {
            ticks: now,
            marker,
            devices: samples,
            framework,
        });
    }

    fn refresh_driver_figures(&self, devices: &[u32], now: u64) {
        let mut used = BTreeMap::new();
        for &d in devices {
            let mut info = self.track.devices.info(d);
            if info.total_bytes.is_none() {
                info.total_bytes = driver::total_mem(d);
            }
            if let Some((free, total)) = driver::mem_info(d) {
                info = DeviceInfo {
                    total_bytes: Some(total),
                    free_bytes: Some(free),
                    sampled_ticks: now,
                };
                used.insert(d, total.saturating_sub(free));
            }
            self.track.devices.set_info(d, info);
        }
        if let Ok(mut st) = self.state.lock() {
            st.device_used.extend(used);
        }
        self.refresh_pools(now);
    }

    /// The last point, at exit: device totals (no context needed) and, for the
    /// exiting thread's device, free memory, when the driver still answers.
    pub fn final_sample(&self) {
        if self.config.device_query {
            let now = clock::ticks();
            for d in self.track.devices.seen() {
                let mut info = self.track.devices.info(d);
                if info.total_bytes.is_none() {
                    info.total_bytes = driver::total_mem(d);
                }
                self.track.devices.set_info(d, info);
            }
            if let Some((free, total)) = driver::mem_info_current() {
                let d = tls::device();
                self.track.devices.set_info(
                    d,
                    DeviceInfo {
                        total_bytes: Some(total),
                        free_bytes: Some(free),
                        sampled_ticks: now,
                    },
                );
                if let Ok(mut st) = self.state.lock() {
                    st.device_used.insert(d, total.saturating_sub(free));
                }
            }
            self.refresh_pools(now);
        }
        self.sample(None, false);
    }

    /// Pool attributes need no context: safe from any thread.
    pub fn refresh_pools(&self, now: u64) {
        let pools: Vec<_> = self
            .track
            .devices
            .pools()
            .into_iter()
            .filter_map(|p| {
                driver::pool_attrs(p.handle).map(|attrs| {
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
        if let Ok(mut st) = self.state.lock() {
            st.pools.extend(pools);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: u64, live: u64, marker: Option<&str>) -> Point {
        Point {
            ticks: t,
            marker: marker.map(String::from),
            framework: Vec::new(),
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

    fn timeline_of(cap: usize) -> Timeline {
        let (mut config, _) = Config::from_env();
        config.timeline_points = cap;
        let track = crate::shim::track::Settings {
            device_query: false,
            events: 16,
            stack_min: u64::MAX,
        };
        Timeline::new(
            Box::leak(Box::new(config)),
            Box::leak(Box::new(Tracker::new(track, || {}))),
        )
    }

    #[test]
    fn the_timeline_stays_within_its_bound() {
        let t = timeline_of(16);
        for i in 0..10_000 {
            t.push(point(i, i, if i % 1000 == 0 { Some("m") } else { None }));
        }
        let n = t.state.lock().unwrap().points.len();
        assert!(n <= 16 + 10, "{n} points kept");
    }
}
