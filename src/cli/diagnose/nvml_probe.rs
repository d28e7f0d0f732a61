//! The device-level probe: a server that was not started under the shim,
//! watched through NVML (`crate::device`: no CUDA context in kvscope). It
//! reads what the driver counts for each of the server's processes on each
//! GPU at every marker and every sample, and keeps the markers itself.
//!
//! How those samples become a verdict: `finish` turns them into one report
//! per process (`modes: ["nvml"]`, a timeline whose `live_bytes` are the
//! driver's figure, the markers diagnose placed, no allocation), so that the
//! same check code reads them; `super::device_level` then keeps only what
//! that level can support. One check, not a second verdict module.

use super::super::error::{CliError, Result};
use super::probe::{Collected, Probe};
use crate::device::nvml::Nvml;
use crate::device::probe::{self as device, Snapshot};
use crate::report::{
    DeviceSample, DeviceStats, Marker, Process, Reason, Report, Sample, ShimInfo, SpaceStats,
};
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::report::DEVICE_LEVEL_MODE as MODE;

/// One reading: per process, per GPU, the bytes NVML gave.
struct Point {
    t_ms: f64,
    marker: Option<String>,
    /// (pid, gpu) -> bytes.
    held: BTreeMap<(u32, u32), u64>,
    /// gpu -> (used, total) of the whole device.
    gpus: BTreeMap<u32, (u64, u64)>,
}

pub struct NvmlProbe {
    pids: Vec<u32>,
    /// Opened once for every sample (None: opened per reading, which then
    /// says why it cannot be).
    nvml: Option<Nvml>,
    t0: Instant,
    start_unix_ms: u64,
    points: Vec<Point>,
    markers: Vec<Marker>,
    /// The first failed reading (NVML can fail mid-run: a driver reset).
    failed: Option<String>,
    failures: u64,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NvmlProbe {
    /// `pids`: the server's processes NVML lists, in this namespace's PIDs
    /// (the caller has checked that NVML's host PIDs map here).
    pub fn new(pids: Vec<u32>) -> NvmlProbe {
        NvmlProbe {
            pids,
            nvml: Nvml::open().ok(),
            t0: Instant::now(),
            start_unix_ms: unix_ms(),
            points: Vec::new(),
            markers: Vec::new(),
            failed: None,
            failures: 0,
        }
    }

    fn read(&mut self, marker: Option<String>) -> Option<u64> {
        let t_ms = self.t0.elapsed().as_secs_f64() * 1000.0;
        let read = match &self.nvml {
            Some(n) => device::read_with(n),
            None => device::read(),
        };
        let snap: Snapshot = match read {
            Ok(s) => s,
            Err(e) => {
                self.failures += 1;
                self.failed.get_or_insert(e);
                return None;
            }
        };
        let mut held = BTreeMap::new();
        let mut gpus = BTreeMap::new();
        for g in &snap.gpus {
            gpus.insert(g.index, (g.used_bytes, g.total_bytes));
            for p in &g.processes {
                let pid = p.pid.unwrap_or(p.host_pid);
                if self.pids.contains(&pid) {
                    *held.entry((pid, g.index)).or_insert(0) += p.used_bytes.unwrap_or(0);
                }
            }
        }
        let total = held.values().sum();
        self.points.push(Point {
            t_ms,
            marker,
            held,
            gpus,
        });
        Some(total)
    }

    fn alive(&self) -> bool {
        self.pids
            .iter()
            .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    }

    /// The report of one process: its timeline on each GPU it held memory on.
    fn report(&self, pid: u32, reason: &str) -> Option<Report> {
        let gpus: Vec<u32> = {
            let mut g: Vec<u32> = self
                .points
                .iter()
                .flat_map(|p| p.held.keys().filter(|k| k.0 == pid).map(|k| k.1))
                .collect();
            g.sort_unstable();
            g.dedup();
            g
        };
        if gpus.is_empty() {
            return None;
        }
        let at = |p: &Point, g: u32| p.held.get(&(pid, g)).copied().unwrap_or(0);
        let timeline: Vec<Sample> = self
            .points
            .iter()
            .map(|p| Sample {
                t_ms: p.t_ms,
                marker: p.marker.clone(),
                devices: gpus
                    .iter()
                    .map(|&g| DeviceSample {
                        device: g,
                        live_bytes: at(p, g),
                        live_count: 0,
                        max_live_bytes: at(p, g),
                        reserved_bytes: None,
                        device_used_bytes: p.gpus.get(&g).map(|u| u.0),
                        framework: None,
                    })
                    .collect(),
            })
            .collect();
        let devices = gpus
            .iter()
            .map(|&g| {
                let peak = self
                    .points
                    .iter()
                    .map(|p| (at(p, g), p.t_ms))
                    .max_by_key(|x| x.0);
                let last = self.points.last();
                DeviceStats {
                    device: g,
                    total_bytes: last.and_then(|p| p.gpus.get(&g)).map(|u| u.1),
                    free_bytes: last
                        .and_then(|p| p.gpus.get(&g))
                        .map(|u| u.1 - u.0.min(u.1)),
                    free_sampled_t_ms: last.map(|p| p.t_ms),
                    memory: SpaceStats {
                        live_bytes: last.map_or(0, |p| at(p, g)),
                        peak_bytes: peak.map_or(0, |x| x.0),
                        peak_t_ms: peak.map(|x| x.1),
                        ..SpaceStats::default()
                    },
                    managed: SpaceStats::default(),
                }
            })
            .collect();
        Some(Report {
            schema: crate::report::SCHEMA.into(),
            reason: Some(Reason::Dump),
            reason_detail: Some(reason.into()),
            modes: vec![MODE.into()],
            process: Process {
                // One run: the server's processes are checked together.
                run_id: Some(format!("nvml-{}", self.start_unix_ms)),
                pid,
                ppid: super::procs::parent(pid).unwrap_or(0),
                cmdline: super::procs::cmdline(pid)
                    .split(' ')
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect(),
                hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string()),
                start_unix_ms: self.start_unix_ms,
                ..Process::default()
            },
            shim: ShimInfo {
                version: format!("{MODE} (no shim)"),
                sample_ms: super::probe::SAMPLE_EVERY.as_millis() as u64,
                ..ShimInfo::default()
            },
            written_unix_ms: unix_ms(),
            t_ms: self.points.last().map_or(0.0, |p| p.t_ms),
            devices,
            markers: self.markers.clone(),
            timeline,
            ..Report::default()
        })
    }
}

impl Probe for NvmlProbe {
    fn describe(&self) -> String {
        let p: Vec<String> = self.pids.iter().map(u32::to_string).collect();
        format!(
            "NVML at device level (no shim) in {} process{} (pid {})",
            self.pids.len(),
            if self.pids.len() == 1 { "" } else { "es" },
            p.join(", ")
        )
    }

    fn mark(&mut self, labels: &[String]) -> Result<()> {
        if !self.alive() {
            return Err(CliError {
                message: "the server's processes are gone".into(),
                code: 1,
            });
        }
        // One reading for the markers placed together, each its own point
        // (as the shim takes a sample per marker).
        let t_ms = self.t0.elapsed().as_secs_f64() * 1000.0;
        for l in labels {
            self.markers.push(Marker {
                t_ms,
                label: l.clone(),
                source: "external".into(),
            });
            self.read(Some(l.clone()));
        }
        Ok(())
    }

    fn sample(&mut self) -> Option<u64> {
        self.read(None)
    }

    fn finish(&mut self, reason: &str) -> Collected {
        self.read(None);
        let mut notes = Vec::new();
        if let Some(e) = &self.failed {
            notes.push(format!(
                "{} NVML reading{} failed (the first: {e})",
                self.failures,
                if self.failures == 1 { "" } else { "s" }
            ));
        }
        let mut built = Vec::new();
        for &pid in &self.pids {
            match self.report(pid, reason) {
                Some(r) => built.push((format!("nvml pid {pid}"), r)),
                None => notes.push(format!(
                    "pid {pid}: NVML never listed it holding device memory"
                )),
            }
        }
        Collected {
            reports: Vec::new(),
            built,
            notes,
        }
    }
}
