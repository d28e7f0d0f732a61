//! The shim's life in a process: its lazy start, `get`, the exit and fork
//! handlers, and the wiring between recording and output.
//!
//! Nothing happens at load time: the first hook that needs the shim starts
//! it (reads the configuration, registers the exit and fork handlers, starts
//! the background thread). A process that never calls CUDA pays nothing and
//! gets no report. After fork() the child is a pure pass-through: its CUDA
//! state is unusable anyway and the parent's table means nothing there.

use super::config::Config;
use super::output::{sampler, timeline::Timeline, wake, writer::Writer};
use super::signals;
use super::track::{self, clock, counters, guard::protect, Tracker};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering::*};

const OFF: u8 = 0;
const STARTING: u8 = 1;
const ON: u8 = 2;
const DISABLED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(OFF);
static SHIM: AtomicPtr<Shim> = AtomicPtr::new(std::ptr::null_mut());
/// Whether the background thread runs; it is woken (`wake`) when an OOM
/// post-mortem waits or a terminating signal asks for a final report.
static BACKGROUND: AtomicBool = AtomicBool::new(false);

thread_local! {
    static STARTING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// The shim once started: its settings, what it records, how it writes.
pub struct Shim {
    pub config: &'static Config,
    pub track: &'static Tracker,
    pub writer: &'static Writer,
}

impl Shim {
    pub fn timeline(&self) -> &'static Timeline {
        self.writer.timeline
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

/// What the hooks record into (starting the shim on first use).
#[inline]
pub fn tracker() -> Option<&'static Tracker> {
    get().map(|s| s.track)
}

/// Whether hooks should route and record (the shim is on or not yet started).
pub fn active() -> bool {
    matches!(STATE.load(Acquire), OFF | ON)
}

#[cold]
fn start() -> Option<&'static Shim> {
    loop {
        match STATE.compare_exchange(OFF, STARTING, AcqRel, Acquire) {
            Ok(_) => {
                STARTING_HERE.with(|s| s.set(true));
                let shim = protect(start_here).flatten();
                if shim.is_none() && STATE.load(Acquire) == STARTING {
                    STATE.store(DISABLED, Release); // the start failed: pass through
                }
                STARTING_HERE.with(|s| s.set(false));
                return shim;
            }
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
    let (config, warnings) = Config::from_env();
    for w in &warnings {
        eprintln!("kvscope: warning: {w}");
    }
    if config.disabled {
        STATE.store(DISABLED, Release);
        return None;
    }
    // Our own panics are caught at every hook; keep them off the host's stderr.
    std::panic::set_hook(Box::new(|_| {
        if let Some(s) = peek() {
            s.track.anomalies.panics.fetch_add(1, Relaxed);
        }
    }));
    clock::start();
    counters::set_events_per_thread(config.events);
    let config: &'static Config = Box::leak(Box::new(config));
    let settings = track::Settings {
        device_query: config.device_query,
        events: config.events,
        stack_min: match config.stack_min {
            0 => u64::MAX,
            n => n,
        },
    };
    if config.stack_min > 0 {
        track::stacks::Stacks::prepare();
    }
    let track: &'static Tracker = Box::leak(Box::new(Tracker::new(settings, oom_captured)));
    let timeline: &'static Timeline = Box::leak(Box::new(Timeline::new(config, track)));
    let writer: &'static Writer = Box::leak(Box::new(Writer::new(config, track, timeline)));
    let shim: &'static Shim = Box::leak(Box::new(Shim {
        config,
        track,
        writer,
    }));
    SHIM.store(shim as *const Shim as *mut Shim, Release);
    STATE.store(ON, Release);
    // SAFETY: plain C function pointers with static lifetime.
    unsafe {
        libc::atexit(at_exit);
        libc::pthread_atfork(None, None, Some(in_child as unsafe extern "C" fn()));
    }
    BACKGROUND.store(sampler::spawn(writer), Release);
    signals::arm(on_stop_signal);
    Some(shim)
}

/// The shim if it is already on; never starts it.
pub fn peek() -> Option<&'static Shim> {
    let p = SHIM.load(Acquire);
    // SAFETY: set once from a leaked Box, never freed.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The first out-of-memory failure was captured (on the failing thread):
/// the background thread writes its post-mortem; without one, it is written
/// here and now, as the only thread there is to do it.
fn oom_captured() {
    if BACKGROUND.load(Acquire) {
        wake::notify(wake::OOM); // or it is written at the next sample
    } else if let Some(s) = peek() {
        s.writer.write_pending_oom();
    }
}

/// A stop is being handled (a second signal does not wait again).
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The shim's handler of a terminating signal the host left at its default
/// action: the background thread writes the final report (reason `signal`)
/// while this waits, at most KVSCOPE_STOP_WAIT_MS; then the process dies by
/// the signal as it would have. A forked child, a process without the
/// background thread, or a second signal dies at once. Async-signal-safe:
/// atomics, a pipe, poll, sigaction, raise. Dumps and checkpoints stop
/// first, so that the final report is not kept waiting behind them.
extern "C" fn on_stop_signal(sig: libc::c_int) {
    // SAFETY: errno of this thread, saved and restored around the handler.
    let errno = unsafe { *libc::__errno_location() };
    let ready = STATE.load(Acquire) == ON && BACKGROUND.load(Acquire) && wake::is_open();
    if ready && !STOPPING.swap(true, AcqRel) && (0..64).contains(&sig) {
        if let Some(s) = peek() {
            s.writer.stop_requested();
            wake::notify(wake::STOP_BASE + sig as u8);
            wake::wait_answer(s.config.stop_wait_ms);
        }
    }
    signals::die_by(sig);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(shim) = peek() {
            sampler::stop();
            shim.timeline().final_sample();
            shim.writer.live.remove();
            shim.writer.write_exit();
        }
    });
}

extern "C" fn in_child() {
    SHIM.store(std::ptr::null_mut(), Release);
    STATE.store(DISABLED, Release);
}
