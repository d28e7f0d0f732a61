//! Markers: labelled points in time that split a run into phases (loading,
//! profiling, serving, idle). Allocations are attributed to the phase they
//! were made in.

use super::clock;
use crate::report::MARKER_LABEL_MAX;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// kvscope_mark() from the program.
    Api,
    /// `kvscope mark PID LABEL` from outside.
    External,
    /// The shim's own idle detection.
    Auto,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::External => "external",
            Source::Auto => "auto",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Marker {
    pub ticks: u64,
    pub label: String,
    pub source: Source,
}

/// Markers kept; the oldest go first beyond this.
const MAX_MARKERS: usize = 10_000;

#[derive(Default)]
pub struct Markers {
    list: Mutex<Vec<Marker>>,
}

impl Markers {
    pub fn add(&self, label: &str, source: Source) -> Marker {
        let m = Marker {
            ticks: clock::observed(),
            label: label.chars().take(MARKER_LABEL_MAX).collect(),
            source,
        };
        if let Ok(mut l) = self.list.lock() {
            if l.len() >= MAX_MARKERS {
                l.remove(0);
            }
            l.push(m.clone());
        }
        m
    }

    pub fn all(&self) -> Vec<Marker> {
        self.list.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// The phase of a moment: how many markers came at or before it.
pub fn phase_of(sorted_ticks: &[u64], ticks: u64) -> u32 {
    sorted_ticks.partition_point(|&t| t <= ticks) as u32
}
