//! One progress line on a terminal (stderr): the step, requests done out of
//! the total, the time spent. Nothing when stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    on: bool,
    t0: Instant,
}

impl Progress {
    pub fn new(t0: Instant) -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            t0,
        }
    }

    pub fn show(&self, step: &str, done: u64, total: u64) {
        if !self.on {
            return;
        }
        let mut e = std::io::stderr();
        let _ = write!(
            e,
            "\r\x1b[K{step}: {done}/{total} requests, {:.1} s",
            self.t0.elapsed().as_secs_f64()
        );
        let _ = e.flush();
    }

    pub fn clear(&self) {
        if self.on {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
