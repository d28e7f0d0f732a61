//! `kvscope devices [--pid PID]... [--json]`: what each process holds on
//! each GPU, read at device level through NVML (no shim, no CUDA context).

use super::error::{CliError, Result};
use crate::device::probe::{self, Snapshot};
use crate::units::bytes;
use clap::Args;
use std::fmt::Write;

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Only these processes (this namespace's PIDs; NVML's host PIDs when they cannot be mapped).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// Print one JSON object (`kvscope.devices.v1`).
    #[arg(long)]
    pub json: bool,
}

fn keep(s: &mut Snapshot, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    for g in &mut s.gpus {
        g.processes
            .retain(|p| pids.contains(&p.pid.unwrap_or(p.host_pid)));
    }
    for pid in pids {
        if s.bytes_of(*pid).is_none() {
            s.notes
                .push(format!("pid {pid} holds no device memory NVML reports"));
        }
    }
}

pub fn text(s: &Snapshot) -> String {
    let mut o = String::new();
    for g in &s.gpus {
        let _ = writeln!(
            o,
            "GPU {} {}: {} used of {}",
            g.index,
            g.uuid,
            bytes(g.used_bytes),
            bytes(g.total_bytes)
        );
        for p in &g.processes {
            let who = match (p.pid, p.container_pid) {
                (Some(pid), Some(c)) => format!("pid {pid} (pid {c} in its container)"),
                (Some(pid), None) => format!("pid {pid}"),
                (None, _) => format!("host pid {} (not mapped)", p.host_pid),
            };
            let _ = writeln!(
                o,
                "  {who}: {}",
                p.used_bytes.map_or("? (NVML cannot say)".into(), bytes)
            );
        }
        if g.processes.is_empty() {
            let _ = writeln!(o, "  no compute process");
        }
    }
    for n in &s.notes {
        let _ = writeln!(o, "note: {n}");
    }
    let _ = writeln!(
        o,
        "(device level, through NVML: what the driver counts per process, the CUDA context and memory no shim sees included)"
    );
    o
}

pub fn run(a: &DevicesArgs) -> Result<i32> {
    let mut s = probe::read().map_err(|e| CliError {
        message: e,
        code: 1,
    })?;
    keep(&mut s, &a.pids);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&s).map_err(|e| CliError::input(e.to_string()))?
        );
    } else {
        print!("{}", text(&s));
    }
    Ok(0)
}
