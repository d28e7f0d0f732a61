//! The one background thread: every KVSCOPE_SAMPLE_MS it adds a point to
//! the timeline, notices idleness, applies requests sent from outside
//! (`control`) and writes checkpoints; woken at once when the first
//! out-of-memory failure has been captured, it writes the post-mortem.
//! Output pulls from the recorded state; nothing here is called from a hook.

use super::control;
use super::writer::Writer;
use crate::shim::track::markers::Source;
use crate::shim::track::{clock, counters};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::thread::Thread;
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

fn total_calls() -> u64 {
    counters::calls().iter().sum()
}

/// Sleeps until `deadline`, writing a waiting post-mortem whenever woken.
fn wait_until(w: &Writer, deadline: Instant) {
    loop {
        w.write_pending_oom();
        let now = Instant::now();
        if now >= deadline || STOP.load(Acquire) {
            return;
        }
        std::thread::park_timeout(deadline - now);
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
    let mut checkpoint_calls = last_calls;
    let mut next = Instant::now() + period;
    while !STOP.load(Acquire) {
        wait_until(w, next);
        next += period;
        if STOP.load(Acquire) {
            break;
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let now = clock::ticks();
            let calls = total_calls();
            if calls != last_calls {
                last_calls = calls;
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
            }
            w.timeline.sample(None, true);
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

/// Starts the thread; its handle wakes it. None when sampling is off or
/// the thread could not start.
pub fn spawn(w: &'static Writer) -> Option<Thread> {
    if w.config.sample_ms == 0 {
        return None;
    }
    let spawned = std::thread::Builder::new()
        .name("kvscope-sampler".into())
        .stack_size(256 << 10)
        .spawn(move || run(w));
    match spawned {
        Ok(h) => Some(h.thread().clone()),
        Err(_) => {
            w.config
                .log("could not start the sampler thread; no timeline");
            None
        }
    }
}

pub fn stop() {
    STOP.store(true, Release);
}
