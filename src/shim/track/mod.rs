//! Recording: what the hooks record and where it is kept. The live `table`
//! (one shard per thread), per-thread `counters` with exact peaks, the
//! flight-recorder `events`, per-thread state (`tls`), `clock`, VMM
//! reservations and handles (`vmm`), what is known of `devices`, failed
//! calls (`failures`), the first out-of-memory failure (`oom`) and phase
//! `markers`. `record` is the one entry from the hooks.
//!
//! Nothing here writes a report or calls up into the hooks: output reads
//! this state (the background thread, a dump, the exit), and the one signal
//! that goes the other way, "an out-of-memory post-mortem is waiting", is a
//! function pointer the lifecycle hands in.

pub mod clock;
pub mod counters;
pub mod devices;
pub mod entry;
pub mod events;
pub mod failures;
pub mod guard;
pub mod markers;
pub mod oom;
pub mod owned;
pub mod record;
pub mod spin;
pub mod stacks;
pub mod table;
pub mod tls;
pub mod vmm;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::*};
use std::sync::Mutex;

/// How allocations reached the shim (bits of `Tracker::modes`).
pub const MODE_PRELOAD: u8 = 1;
pub const MODE_PLUGGABLE: u8 = 2;

/// Calls that went wrong without failing: counted, reported, never refused.
#[derive(Default)]
pub struct Anomalies {
    pub untracked_frees: AtomicU64,
    pub double_frees: AtomicU64,
    pub size_mismatched_frees: AtomicU64,
    /// Allocations at an address still in the table (its free went unseen).
    pub replaced: AtomicU64,
    pub panics: AtomicU64,
}

/// What recording needs of the settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Ask the driver for free memory on the failing thread of an OOM.
    pub device_query: bool,
    /// Flight-recorder events a post-mortem keeps.
    pub events: usize,
    /// Allocations of at least this many bytes keep their native stack
    /// (u64::MAX: none, so that the hot path makes one comparison).
    pub stack_min: u64,
}

/// Everything the hooks record into, made once when the shim starts.
pub struct Tracker {
    pub table: table::Table,
    pub vmm: vmm::Vmm,
    pub devices: devices::Devices,
    pub failures: failures::Failures,
    pub anomalies: Anomalies,
    pub markers: markers::Markers,
    pub oom: oom::Oom,
    pub stacks: stacks::Stacks,
    pub settings: Settings,
    unrouted: Mutex<Vec<String>>,
    modes: AtomicU8,
    /// Called on the failing thread once the first out-of-memory failure is
    /// captured, so that its post-mortem gets written off that thread.
    on_oom: fn(),
}

impl Tracker {
    pub fn new(settings: Settings, on_oom: fn()) -> Tracker {
        Tracker {
            table: table::Table::new(),
            vmm: vmm::Vmm::default(),
            devices: devices::Devices::default(),
            failures: failures::Failures::default(),
            anomalies: Anomalies::default(),
            markers: markers::Markers::default(),
            oom: oom::Oom::default(),
            stacks: stacks::Stacks::default(),
            settings,
            unrouted: Mutex::new(Vec::new()),
            modes: AtomicU8::new(0),
            on_oom,
        }
    }

    pub fn note_mode(&self, mode: u8) {
        if self.modes.load(Relaxed) & mode == 0 {
            self.modes.fetch_or(mode, Relaxed);
        }
    }

    pub fn modes(&self) -> u8 {
        self.modes.load(Relaxed)
    }

    /// A driver entry point handed out without a hook (kept for the report).
    pub fn note_unrouted(&self, what: &str) {
        if let Ok(mut u) = self.unrouted.lock() {
            if u.len() < 64 && !u.iter().any(|x| x == what) {
                u.push(what.to_string());
            }
        }
    }

    pub fn unrouted(&self) -> Vec<String> {
        self.unrouted.lock().map(|u| u.clone()).unwrap_or_default()
    }

    pub(crate) fn oom_captured(&self) {
        (self.on_oom)();
    }
}
