//! Writes reports: at exit, after the first out-of-memory failure, on demand
//! and as periodic checkpoints. One at a time. A directory that cannot be
//! written costs one warning line on stderr, never the host process.

use super::outdir::OutDir;
use super::snapshot::{self, Sources};
use super::state_file::LiveState;
use super::timeline::Timeline;
use crate::report::Reason;
use crate::shim::config::Config;
use crate::shim::signals::StopMask;
use crate::shim::track::oom::Capture;
use crate::shim::track::{clock, counters, Tracker};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

struct State {
    dir: Option<Result<OutDir, String>>,
    dumps: u32,
    warned: bool,
}

/// Writes reports of the recorded state, with the timeline.
pub struct Writer {
    pub config: &'static Config,
    pub track: &'static Tracker,
    pub timeline: &'static Timeline,
    /// The live state file, rewritten by the background thread.
    pub live: LiveState,
    state: Mutex<State>,
    /// Held from taking the pending post-mortem to its file being written, so
    /// that the exit path (which writes one still pending) waits for one that
    /// the background thread is writing instead of exiting under it.
    oom: Mutex<()>,
    /// A terminating signal is being handled: the final report must get the
    /// lock. The state mutex is not fair, and a host thread calling
    /// `kvscope_dump` in a loop could take it back again and again before the
    /// woken background thread runs (seen on a loaded machine: no final
    /// report within the stop wait). Dumps and checkpoints stop here.
    stopping: AtomicBool,
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

fn any_calls() -> bool {
    counters::calls().iter().any(|&n| n > 0)
}

impl Writer {
    pub fn new(
        config: &'static Config,
        track: &'static Tracker,
        timeline: &'static Timeline,
    ) -> Writer {
        Writer {
            config,
            track,
            timeline,
            live: LiveState::default(),
            state: Mutex::new(State {
                dir: None,
                dumps: 0,
                warned: false,
            }),
            oom: Mutex::new(()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Writes a report; returns its path.
    fn write(
        &self,
        reason: Reason,
        detail: Option<String>,
        oom: Option<&Capture>,
    ) -> Option<PathBuf> {
        let yields = matches!(reason, Reason::Dump | Reason::Checkpoint);
        if yields && self.stopping.load(Ordering::Acquire) {
            return None;
        }
        let _mask = StopMask::block(); // dropped after the lock below
        let mut st = self.state.lock().ok()?;
        // Checked again: the signal may have come while this waited.
        if yields && self.stopping.load(Ordering::Acquire) {
            return None;
        }
        if st.dir.is_none() {
            let dir = OutDir::prepare(self.config.out_dir.as_deref(), &self.config.tmp_dir);
            // The fallback is used, never silently: one line, once.
            if let Ok(OutDir {
                path,
                note: Some(why),
                ..
            }) = &dir
            {
                eprintln!(
                    "kvscope: warning: reports go to {} instead ({why})",
                    path.display()
                );
            }
            st.dir = Some(dir);
        }
        let out = match st.dir.as_ref() {
            Some(Ok(d)) => Ok((d.path.display().to_string(), d.note.clone())),
            Some(Err(e)) => Err(e.clone()),
            None => return None,
        };
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                if !st.warned {
                    st.warned = true;
                    eprintln!("kvscope: warning: no report written, no writable directory: {e}");
                }
                return None;
            }
        };
        let sources = Sources {
            config: self.config,
            track: self.track,
            timeline: self.timeline,
        };
        let report = snapshot::build(&sources, reason, detail, oom, out);
        let host = safe_name(report.process.hostname.as_deref().unwrap_or("host"));
        let suffix = match reason {
            Reason::Dump => {
                st.dumps += 1;
                format!("-{}", st.dumps)
            }
            _ => String::new(),
        };
        // The start time makes names unique across runs: a container's
        // processes are often PID 1 every time.
        let name = format!(
            "kvscope-{host}-{}-{}-{}{suffix}.json",
            report.process.pid,
            report.process.start_unix_ms,
            reason.name()
        );
        let written = match &st.dir {
            Some(Ok(d)) => d.write(&name, |w| {
                serde_json::to_writer(w, &report).map_err(std::io::Error::other)
            }),
            _ => return None,
        };
        match written {
            Ok(p) => {
                self.config.log(&format!("wrote {}", p.display()));
                Some(p)
            }
            Err(e) => {
                if !st.warned {
                    st.warned = true;
                    eprintln!("kvscope: warning: could not write report {name}: {e}");
                }
                None
            }
        }
    }

    /// At exit, when the process made any CUDA allocation call (and the
    /// post-mortem of an OOM first, if it is still waiting).
    pub fn write_exit(&self) {
        self.write_pending_oom();
        if any_calls() {
            self.write(Reason::Exit, None, None);
        }
    }

    /// The post-mortem of the first out-of-memory failure, from what the
    /// failing thread captured; once.
    pub fn write_pending_oom(&self) {
        let _mask = StopMask::block();
        let Ok(_writing) = self.oom.lock() else {
            return;
        };
        if let Some(c) = self.track.oom.take_pending() {
            // The post-mortem stands alone: pools as they are now (what the
            // fragmentation check needs), beside VMM and the timeline.
            if self.config.device_query {
                self.timeline.refresh_pools(clock::ticks());
            }
            let detail = format!(
                "{} of {} bytes failed",
                c.failure.api.name(),
                c.failure.size
            );
            self.write(Reason::Oom, Some(detail), Some(&c));
        }
    }

    pub fn write_dump(&self, detail: Option<String>) -> Option<PathBuf> {
        let _mask = StopMask::block();
        // Pools change between samples; a dump shows them as they are now.
        if self.config.device_query {
            self.timeline.refresh_pools(clock::ticks());
        }
        self.write(Reason::Dump, detail, None)
    }

    /// A terminating signal came: from now on no dump or checkpoint is
    /// written, so the final report is next. Async-signal-safe (one store).
    pub fn stop_requested(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// The final report on a terminating signal (then the process dies by it).
    pub fn write_signal(&self, sig: i32) {
        self.write_pending_oom();
        self.timeline.sample(None, true);
        self.write(Reason::Signal, Some(signal_name(sig).into()), None);
        self.live.remove();
    }

    pub fn write_checkpoint(&self) {
        if any_calls() {
            self.write(Reason::Checkpoint, None, None);
        }
    }
}
