//! One device-level reading: every GPU's processes with their bytes (as the
//! driver counts them: context, allocations no shim saw, everything), and
//! their PIDs as this namespace sees them. `read` is what a device-level
//! diagnosis takes two of to see growth.

use super::nvml::{self, Gpu};
use super::pidns::{self, Mapped, View};
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct ProcessRow {
    /// The driver's (host) PID, as NVML gives it.
    pub host_pid: u32,
    /// This namespace's PID; null when it cannot be mapped (see `notes`).
    pub pid: Option<u32>,
    /// Its PID inside its own namespace (a container), when another.
    pub container_pid: Option<u32>,
    /// Device memory it holds; null when NVML cannot say.
    pub used_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GpuRow {
    pub index: u32,
    pub uuid: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub processes: Vec<ProcessRow>,
}

/// `kvscope.devices.v1`.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub schema: &'static str,
    pub source: &'static str,
    /// NVML's PIDs are this namespace's.
    pub pids_mapped: bool,
    pub gpus: Vec<GpuRow>,
    pub notes: Vec<String>,
}

impl Snapshot {
    /// Bytes a process (this namespace's PID when mapped, else the host's)
    /// holds over all GPUs; None when it holds none that NVML can say.
    pub fn bytes_of(&self, pid: u32) -> Option<u64> {
        let rows: Vec<&ProcessRow> = self
            .gpus
            .iter()
            .flat_map(|g| &g.processes)
            .filter(|p| p.pid.unwrap_or(p.host_pid) == pid)
            .collect();
        rows.iter()
            .map(|p| p.used_bytes)
            .sum::<Option<u64>>()
            .filter(|_| !rows.is_empty())
    }
}

pub fn from_gpus(gpus: Vec<Gpu>, view: &View, proc_root: &Path) -> Snapshot {
    let rows = gpus
        .into_iter()
        .map(|g| GpuRow {
            index: g.index,
            uuid: g.uuid,
            total_bytes: g.total_bytes,
            used_bytes: g.used_bytes,
            processes: g
                .processes
                .into_iter()
                .map(|p| {
                    let Mapped { pid, inner_pid } = pidns::map(view, proc_root, p.host_pid);
                    ProcessRow {
                        host_pid: p.host_pid,
                        pid,
                        container_pid: inner_pid,
                        used_bytes: p.used_bytes,
                    }
                })
                .collect(),
        })
        .collect();
    Snapshot {
        schema: "kvscope.devices.v1",
        source: "nvml",
        pids_mapped: view.unmapped_reason().is_none(),
        gpus: rows,
        notes: view.unmapped_reason().into_iter().collect(),
    }
}

/// Reads NVML now; one line when there is no NVML.
pub fn read() -> Result<Snapshot, String> {
    let gpus = nvml::read()?;
    let proc_root = Path::new("/proc");
    Ok(from_gpus(gpus, &View::of(proc_root), proc_root))
}
