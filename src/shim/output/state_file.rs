//! The live state file (`report::state`): rewritten by the background
//! thread every sample period, removed at exit. Written to a temporary
//! file, locked, renamed over the old one: a reader sees a whole file or the
//! previous one, and the name always points at a file this process holds an
//! `flock` on, so a file whose lock a reader can take is stale (its process
//! died without the exit handler), whatever PID namespace the reader is in.
//! Failures are counted in the next file, never reported to the host.

use super::process;
use super::timeline::Timeline;
use crate::report::state::{self, *};
use crate::report::{error_name, Space};
use crate::shim::config::Config;
use crate::shim::cuda::driver;
use crate::shim::track::counters::{self, lane, LaneTotals};
use crate::shim::track::markers::phase_of;
use crate::shim::track::{clock, Tracker};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// Phases are recounted from the live table at most this often (a walk of
/// the table; everything else in the file is a counter read).
const PHASE_EVERY_MS: f64 = 1000.0;

/// Directory entries looked at for stale files when the shim starts publishing.
const STALE_SWEEP_LIMIT: usize = 4096;

struct Inner {
    /// The published file's name, once the directory was usable.
    path: Option<PathBuf>,
    /// The published file, open: its lock says the process is alive.
    held: Option<File>,
    /// Set once the directory was refused: no more attempts.
    refused: bool,
    errors: u64,
    uuids: BTreeMap<u32, String>,
    phases: BTreeMap<u32, Vec<PhaseBytes>>,
    phases_calls: u64,
    phases_ms: f64,
    removed: bool,
}

/// The publisher of this process's state file.
pub struct LiveState {
    inner: Mutex<Inner>,
}

fn space(t: LaneTotals) -> SpaceState {
    SpaceState {
        live_bytes: t.live_bytes(),
        live_count: t.live_count(),
        peak_bytes: t.peak_bytes,
        allocs: t.allocs,
        frees: t.frees,
        failures: t.failures,
    }
}

impl Default for LiveState {
    fn default() -> Self {
        LiveState {
            inner: Mutex::new(Inner {
                path: None,
                held: None,
                refused: false,
                errors: 0,
                uuids: BTreeMap::new(),
                phases: BTreeMap::new(),
                phases_calls: u64::MAX,
                phases_ms: f64::NEG_INFINITY,
                removed: false,
            }),
        }
    }
}

impl LiveState {
    /// Writes the state now (the background thread, after a timeline point).
    pub fn publish(&self, config: &Config, track: &Tracker, timeline: &Timeline) {
        if !config.state {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.refused || inner.removed {
            return;
        }
        if inner.path.is_none() {
            if let Err(e) = state::prepare_dir(&config.state_dir) {
                inner.refused = true;
                config.log(&format!("no live state file: {e}"));
                return;
            }
            // Files of processes killed before their exit handler go, so
            // that the directory does not fill up where no exporter runs.
            state::remove_stale(&config.state_dir, STALE_SWEEP_LIMIT);
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() } as u32;
            inner.path = Some(
                config
                    .state_dir
                    .join(file_name(pid, clock::start_unix_ms())),
            );
        }
        let s = build(config, track, timeline, &mut inner);
        if let Err(e) = write(&mut inner, &s) {
            inner.errors += 1;
            if inner.errors == 1 {
                config.log(&format!("could not write the live state file: {e}"));
            }
        }
    }

    /// Removes the file (at exit, or before dying by a signal); no more after.
    pub fn remove(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.removed = true;
        if let Some(p) = inner.path.take() {
            let _ = std::fs::remove_file(p);
        }
        inner.held = None;
    }
}

fn write(inner: &mut Inner, s: &State) -> std::io::Result<()> {
    let Some(path) = inner.path.clone() else {
        return Ok(());
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".tmp-{}", name.unwrap_or_default()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&tmp)?;
    // SAFETY: a valid descriptor of a file this thread just opened.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let body = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    let written = f
        .write_all(&body)
        .and_then(|_| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // The new file is in place and locked: the old one (unlinked) goes.
    inner.held = Some(f);
    Ok(())
}

fn build(config: &Config, track: &Tracker, timeline: &Timeline, inner: &mut Inner) -> State {
    let scale = clock::Scale::now();
    let now_ms = scale.ms(clock::ticks());
    let calls: u64 = counters::calls().iter().sum();
    if calls != inner.phases_calls && now_ms - inner.phases_ms >= PHASE_EVERY_MS {
        inner.phases = phases(track);
        inner.phases_calls = calls;
        inner.phases_ms = now_ms;
    }
    let pools = timeline.pools(&scale);
    let vmm = track.vmm.snapshot();
    let mut devices = track.devices.seen();
    devices.sort_unstable();
    let devices = devices
        .into_iter()
        .map(|d| {
            // Asked until the driver answers, then kept (a UUID never changes).
            let uuid = match inner.uuids.get(&d) {
                Some(u) => Some(u.clone()),
                None => driver::uuid(d).map(|b| format_uuid(&b)),
            };
            if let Some(u) = &uuid {
                inner.uuids.insert(d, u.clone());
            }
            let info = track.devices.info(d);
            let memory = space(counters::fold(lane(Space::Device, d)));
            let (pool_reserved, pool_used) = pools
                .iter()
                .filter(|p| p.device == d)
                .fold((0, 0), |(r, u), p| (r + p.reserved_bytes, u + p.used_bytes));
            let framework = track.devices.framework(d);
            DeviceState {
                device: d,
                uuid,
                total_bytes: info.total_bytes,
                used_bytes: timeline.device_used(d),
                reserved_bytes: memory.live_bytes + pool_reserved.saturating_sub(pool_used),
                memory,
                managed: space(counters::fold(lane(Space::Managed, d))),
                pool_reserved_bytes: pool_reserved,
                pool_used_bytes: pool_used,
                vmm_physical_bytes: vmm
                    .handles
                    .iter()
                    .filter(|(_, h, _)| h.device == d && !h.released)
                    .map(|(_, h, _)| h.size)
                    .sum(),
                framework_allocated_bytes: framework.map(|f| f.allocated),
                framework_reserved_bytes: framework.map(|f| f.reserved),
                phases: inner.phases.get(&d).cloned().unwrap_or_default(),
            }
        })
        .collect();
    let (fail_counts, _) = track.failures.snapshot();
    let p = process::process(config);
    State {
        schema: STATE_SCHEMA.into(),
        pid: p.pid,
        hostname: p.hostname,
        start_unix_ms: p.start_unix_ms,
        written_unix_ms: clock::unix_ms(),
        sample_ms: config.sample_ms,
        run_id: p.run_id,
        rank: p.launch.rank,
        local_rank: p.launch.local_rank,
        world_size: p.launch.world_size,
        command: clip(&p.cmdline.join(" ")),
        model_name: config.model_name.clone(),
        devices,
        host: space(counters::fold(lane(Space::Host, 0))),
        vmm: VmmState {
            reserved_bytes: vmm.reserved_bytes,
            physical_bytes: vmm.physical_bytes,
            mapped_bytes: vmm.mapped_bytes,
        },
        failures: fail_counts
            .into_iter()
            .map(|((api, code), count)| FailureCount {
                api: api.name().into(),
                code,
                code_name: error_name(code).into(),
                count,
            })
            .collect(),
        last_marker: track.markers.all().last().map(|m| clip(&m.label)),
        write_errors: inner.errors,
    }
}

/// Live device bytes by the label of the marker that opened their phase.
fn phases(track: &Tracker) -> BTreeMap<u32, Vec<PhaseBytes>> {
    let markers = track.markers.all();
    let mut ticks: Vec<u64> = markers.iter().map(|m| m.ticks).collect();
    ticks.sort_unstable();
    let mut labels: Vec<String> = vec!["start".into()];
    let mut sorted = markers;
    sorted.sort_by_key(|m| m.ticks);
    labels.extend(sorted.iter().map(|m| clip(&m.label)));
    let mut by: BTreeMap<u32, BTreeMap<u32, (u64, u64)>> = BTreeMap::new();
    track.table.for_each(|e| {
        if e.api().space() == Space::Device {
            let slot = by
                .entry(e.device())
                .or_default()
                .entry(phase_of(&ticks, e.ticks))
                .or_default();
            slot.0 += e.size();
            slot.1 += 1;
        }
    });
    by.into_iter()
        .map(|(d, per_phase)| {
            let mut out: Vec<PhaseBytes> = Vec::new();
            for (i, (bytes, count)) in per_phase {
                let label = labels.get(i as usize).cloned().unwrap_or_default();
                if let Some(p) = out.iter_mut().find(|p| p.phase == label) {
                    p.bytes += bytes;
                    p.count += count;
                } else if out.len() < MAX_PHASES {
                    out.push(PhaseBytes {
                        phase: label,
                        bytes,
                        count,
                    });
                } else if let Some(last) = out.last_mut() {
                    last.bytes += bytes;
                    last.count += count;
                }
            }
            (d, out)
        })
        .collect()
}
