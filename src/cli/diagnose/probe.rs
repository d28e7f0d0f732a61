//! How `diagnose` watches the server's memory, behind one small trait so
//! that the steps do not care where the figures come from.
//!
//! Two kinds. [`ShimProbe`]: the server's processes run under the shim,
//! and the probe puts markers on their timelines through the control
//! channel (waiting until each is taken) and asks each for a report at the
//! end; the shim's own timeline (every point with the peak since the last)
//! is the sampling, and `kvscope check` reads the reports.
//!
//! `super::nvml_probe::NvmlProbe` (device level, no shim): `mark` keeps the
//! label and time itself and reads NVML, `sample` returns the processes'
//! device bytes (the steps call it at least every `SAMPLE_EVERY` while
//! requests are in flight, so that the peak is seen; each step keeps the
//! highest as `sampled_peak_bytes`), and `finish` returns reports it built
//! from its readings (`Collected::built`). `run` chooses: the shim's when a
//! process of the server runs it, else NVML's, else a one-line refusal.

use super::super::channel;
use super::super::error::{CliError, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// How often the steps call [`Probe::sample`] while requests are in flight.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// What a probe hands back at the end: reports to check, and what could not
/// be had.
pub struct Collected {
    pub reports: Vec<PathBuf>,
    /// Reports built in kvscope (the device-level probe's), with their labels.
    pub built: Vec<(String, crate::report::Report)>,
    pub notes: Vec<String>,
}

pub trait Probe {
    /// What it is, for the output (`shim (pids 12, 13)`).
    fn describe(&self) -> String;
    /// Puts `labels` on every process's timeline, in order, and returns once
    /// each has been taken (or says which process did not take them).
    fn mark(&mut self, labels: &[String]) -> Result<()>;
    /// Device memory in use now, in bytes, when the probe can say at once
    /// (the shim's probe cannot: its timeline samples inside the process).
    fn sample(&mut self) -> Option<u64>;
    /// Keeps what was measured so far where `finish` will find it even if
    /// the server dies before the end (the shim: a report now, not waited for).
    fn checkpoint(&mut self, _reason: &str) {}
    /// Asks for the final reports and gathers every report the processes
    /// wrote since the probe started.
    fn finish(&mut self, reason: &str) -> Collected;
}

/// The processes of the server that have the shim loaded.
pub struct ShimProbe {
    pids: Vec<u32>,
    /// Each process's report directories, read while it runs (a process
    /// that dies mid-run leaves its reports there).
    dirs: Vec<Vec<PathBuf>>,
    started: SystemTime,
    /// How long a process may take to pick up a request.
    ack: Duration,
}

impl ShimProbe {
    pub fn new(pids: Vec<u32>) -> ShimProbe {
        ShimProbe {
            dirs: pids.iter().map(|&p| channel::report_dirs(p)).collect(),
            pids,
            // A second of slack: file times and our clock may differ that much.
            started: SystemTime::now() - Duration::from_secs(1),
            ack: Duration::from_secs(10),
        }
    }

    fn dirs_of(&self, pid: u32) -> Vec<PathBuf> {
        self.pids
            .iter()
            .position(|&p| p == pid)
            .and_then(|i| self.dirs.get(i).cloned())
            .unwrap_or_default()
    }

    fn alive(&self) -> Vec<u32> {
        self.pids
            .iter()
            .copied()
            .filter(|&p| PathBuf::from(format!("/proc/{p}")).exists() && !channel::exited(p))
            .collect()
    }
}

impl Probe for ShimProbe {
    fn describe(&self) -> String {
        let p: Vec<String> = self.pids.iter().map(u32::to_string).collect();
        format!(
            "the shim in {} process{} (pid {})",
            self.pids.len(),
            if self.pids.len() == 1 { "" } else { "es" },
            p.join(", ")
        )
    }

    fn mark(&mut self, labels: &[String]) -> Result<()> {
        let mut posted = Vec::new();
        for pid in self.alive() {
            for l in labels {
                posted.push(channel::post(pid, "mark", l)?);
            }
        }
        if posted.is_empty() {
            return Err(CliError {
                message: "the server's processes are gone".into(),
                code: 1,
            });
        }
        let left = channel::wait_taken(&posted, Instant::now() + self.ack);
        if !left.is_empty() {
            return Err(CliError {
                message: format!(
                    "a marker was not taken within {} s (is KVSCOPE_SAMPLE_MS > 0 in the server?)",
                    self.ack.as_secs()
                ),
                code: 1,
            });
        }
        Ok(())
    }

    fn sample(&mut self) -> Option<u64> {
        None
    }

    fn checkpoint(&mut self, reason: &str) {
        let posted: Vec<PathBuf> = self
            .alive()
            .into_iter()
            .filter_map(|pid| channel::post(pid, "dump", reason).ok())
            .collect();
        channel::wait_taken(&posted, Instant::now() + self.ack);
    }

    fn finish(&mut self, reason: &str) -> Collected {
        let mut notes = Vec::new();
        let mut waiting = Vec::new();
        for pid in self.alive() {
            // The final report is a dump none of the checkpoints was.
            let before = channel::reports_since(&self.dirs_of(pid), pid, self.started, "-dump-");
            match channel::post(pid, "dump", reason) {
                Ok(p) => waiting.push((pid, p, before)),
                Err(e) => notes.push(format!("pid {pid}: no report asked: {}", e.message)),
            }
        }
        let deadline = Instant::now() + self.ack;
        let files: Vec<PathBuf> = waiting.iter().map(|(_, p, _)| p.clone()).collect();
        channel::wait_taken(&files, deadline);
        // The request is taken first, the report written after it.
        for (pid, _, before) in &waiting {
            let dirs = self.dirs_of(*pid);
            while Instant::now() < deadline
                && channel::reports_since(&dirs, *pid, self.started, "-dump-")
                    .iter()
                    .all(|p| before.contains(p))
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut reports = Vec::new();
        for &pid in &self.pids {
            let found = channel::reports_since(&self.dirs_of(pid), pid, self.started, "");
            if found.is_empty() {
                notes.push(format!("pid {pid}: no report found"));
            }
            reports.extend(found);
        }
        Collected {
            reports,
            built: Vec::new(),
            notes,
        }
    }
}
