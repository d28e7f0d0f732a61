//! The one background thread: every KVSCOPE_SAMPLE_MS it adds a point to
//! the timeline, notices idleness, applies requests sent from outside
//! (`control`) and writes checkpoints; woken at once when the first
//! out-of-memory failure has been captured, it writes the post-mortem.
//! Output pulls from the recorded state; nothing here is called from a hook.

use super::wake;
use super::writer::Writer;
use super::{callers, control};
use crate::shim::signals::StopMask;
use crate::shim::track::markers::Source;
use crate::shim::track::{clock, counters};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

fn total_calls() -> u64 {
    counters::calls().iter().sum()
}

/// Sleeps until `deadline`; woken, writes a waiting post-mortem, or the
/// final report a terminating signal asks for (then answers the handler).
fn wait_until(w: &Writer, deadline: Instant) {
    loop {
        w.write_pending_oom();
        let now = Instant::now();
        if now >= deadline || STOP.load(Acquire) {
            return;
        }
        for request in wake::sleep((deadline - now).as_millis() as u64) {
            if let Some(sig) = request.checked_sub(wake::STOP_BASE) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    w.write_signal(sig.into())
                }));
                wake::answer();
            }
        }
    }
}

fn run(w: &'static Writer) {
    let config = w.config;
    let period = Duration::from_millis(config.sample_ms.max(1));
    let scale_ms = |ticks: u64| clock::Scale::now().ms(ticks);
    let mut last_calls = total_calls();
    let mut last_change = clock::ticks();
    let mut idle_marked = false;
    let mut last_checkpoint = clock::ticks();
    // Nothing is checkpointed yet, whatever was called before this thread ran.
    let mut checkpoint_calls = 0;
    let mut next = Instant::now() + period;
    // Hooks stamp with the time published here from now on (`clock::stamp`).
    clock::observed();
    clock::ticking(true);
    while !STOP.load(Acquire) {
        wait_until(w, next);
        next += period;
        if STOP.load(Acquire) {
            break;
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let now = clock::observed();
            let calls = total_calls();
            if calls != last_calls {
                last_calls = calls;
                // Callers resolved soon after first sight, while loaded.
                let events = counters::recent_events(config.events);
                callers::note(events.iter().map(|e| e.caller));
                last_change = now;
                idle_marked = false;
            } else if config.idle_ms > 0
                && !idle_marked
                && calls > 0
                && scale_ms(now) - scale_ms(last_change) >= config.idle_ms as f64
            {
                idle_marked = true;
                let m = w.track.markers.add("idle", Source::Auto);
                w.timeline.sample(Some(m.label), false);
                // A process about to end without exit handlers (a worker's
                // os._exit) has gone still: its final state gets a checkpoint.
                if config.checkpoint_s > 0 && calls != checkpoint_calls {
                    checkpoint_calls = calls;
                    last_checkpoint = now;
                    w.write_checkpoint();
                }
            }
            w.timeline.sample(None, true);
            w.live.publish(config, w.track, w.timeline);
            control::poll_requests(w);
            if config.checkpoint_s > 0
                && calls != checkpoint_calls
                && scale_ms(now) - scale_ms(last_checkpoint) >= config.checkpoint_s as f64 * 1000.0
            {
                checkpoint_calls = calls;
                last_checkpoint = now;
                w.write_checkpoint();
            }
        }));
        // A slow period (a large report) does not make the next ones pile up.
        next = next.max(Instant::now());
    }
}

/// Starts the thread (woken through `wake`); false when sampling is off or
/// the thread could not start.
pub fn spawn(w: &'static Writer) -> bool {
    if w.config.sample_ms == 0 {
        return false;
    }
    wake::open();
    // The thread is made with the stop signals blocked (a new thread
    // inherits its creator's mask), so that none ever lands on it, even in
    // its first instant: it must be free to write the report a signal asks for.
    let mask = StopMask::block();
    let spawned = std::thread::Builder::new()
        .name("kvscope-sampler".into())
        .stack_size(256 << 10)
        .spawn(move || run(w));
    drop(mask);
    if spawned.is_err() {
        w.config
            .log("could not start the sampler thread; no timeline");
    }
    spawned.is_ok()
}

pub fn stop() {
    STOP.store(true, Release);
    // Allocations after this (exit handlers) read the clock again.
    clock::ticking(false);
}
