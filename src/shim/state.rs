//! The process-wide state of the shim and its lazy start.
//!
//! Nothing happens at load time: the first hook that needs the shim starts
//! it (reads the environment, registers the exit and fork handlers, starts
//! the sampler thread). A process that never calls CUDA pays nothing and
//! gets no report. After fork() the child is a pure pass-through: its CUDA
//! state is unusable anyway and the parent's table means nothing there.

use super::config::Config;
use super::devices::Devices;
use super::failures::Failures;
use super::markers::Markers;
use super::table::Table;
use super::vmm::Vmm;
use super::{clock, counters, sampler, writer};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering::*};
use std::sync::Mutex;

const OFF: u8 = 0;
const STARTING: u8 = 1;
const ON: u8 = 2;
const DISABLED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(OFF);
static SHIM: AtomicPtr<Shim> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    static STARTING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// How allocations reached the shim.
pub const MODE_PRELOAD: u8 = 1;
pub const MODE_PLUGGABLE: u8 = 2;

#[derive(Default)]
pub struct Anomalies {
    pub untracked_frees: AtomicU64,
    pub double_frees: AtomicU64,
    pub size_mismatched_frees: AtomicU64,
    /// Allocations at an address still in the table (its free went unseen).
    pub replaced: AtomicU64,
    pub panics: AtomicU64,
}

pub struct Shim {
    pub config: Config,
    pub table: Table,
    pub vmm: Vmm,
    pub devices: Devices,
    pub failures: Failures,
    pub anomalies: Anomalies,
    pub markers: Markers,
    pub timeline: sampler::Timeline,
    pub writer: writer::Writer,
    pub unrouted: Mutex<Vec<String>>,
    pub oom_written: AtomicBool,
    pub modes: AtomicU8,
}

impl Shim {
    pub fn note_mode(&self, mode: u8) {
        if self.modes.load(Relaxed) & mode == 0 {
            self.modes.fetch_or(mode, Relaxed);
        }
    }

    pub fn log(&self, msg: &str) {
        if self.config.log {
            eprintln!("kvscope: {msg}");
        }
    }
}

/// The shim, started on first use; None when it is disabled, after fork in
/// the child, or while this thread is starting it.
#[inline]
pub fn get() -> Option<&'static Shim> {
    let p = SHIM.load(Acquire);
    if !p.is_null() {
        // SAFETY: set once from a leaked Box, never freed.
        return Some(unsafe { &*p });
    }
    start()
}

/// Whether hooks should route and record (the shim is on or not yet started).
pub fn active() -> bool {
    matches!(STATE.load(Acquire), OFF | ON)
}

#[cold]
fn start() -> Option<&'static Shim> {
    loop {
        match STATE.compare_exchange(OFF, STARTING, AcqRel, Acquire) {
            Ok(_) => return start_here(),
            Err(STARTING) => {
                if STARTING_HERE.with(|s| s.get()) {
                    return None; // a hook reached from our own start: pass through
                }
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
            Err(ON) => {
                // SAFETY: ON is published after SHIM.
                return Some(unsafe { &*SHIM.load(Acquire) });
            }
            Err(_) => return None,
        }
    }
}

fn start_here() -> Option<&'static Shim> {
    STARTING_HERE.with(|s| s.set(true));
    let (config, warnings) = Config::from_env();
    for w in &warnings {
        eprintln!("kvscope: warning: {w}");
    }
    if config.disabled {
        STATE.store(DISABLED, Release);
        STARTING_HERE.with(|s| s.set(false));
        return None;
    }
    // Our own panics are caught at every hook; keep them off the host's stderr.
    std::panic::set_hook(Box::new(|_| {
        if let Some(s) = peek() {
            s.anomalies.panics.fetch_add(1, Relaxed);
        }
    }));
    clock::start();
    counters::set_events_per_thread(config.events);
    let shim: &'static Shim = Box::leak(Box::new(Shim {
        timeline: sampler::Timeline::new(config.timeline_points),
        writer: writer::Writer::new(&config),
        config,
        table: Table::new(),
        vmm: Vmm::default(),
        devices: Devices::default(),
        failures: Failures::default(),
        anomalies: Anomalies::default(),
        markers: Markers::default(),
        unrouted: Mutex::new(Vec::new()),
        oom_written: AtomicBool::new(false),
        modes: AtomicU8::new(0),
    }));
    SHIM.store(shim as *const Shim as *mut Shim, Release);
    STATE.store(ON, Release);
    // SAFETY: plain C function pointers with static lifetime.
    unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(None, None, Some(in_child as unsafe extern "C" fn()));
    }
    sampler::spawn(shim);
    STARTING_HERE.with(|s| s.set(false));
    Some(shim)
}

/// The shim if it is already on; never starts it.
pub fn peek() -> Option<&'static Shim> {
    let p = SHIM.load(Acquire);
    // SAFETY: set once from a leaked Box, never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(shim) = peek() {
            sampler::stop();
            sampler::final_sample(shim);
            writer::write_exit(shim);
        }
    });
}

extern "C" fn in_child() {
    SHIM.store(std::ptr::null_mut(), Release);
    STATE.store(DISABLED, Release);
}
