//! Writes reports: at exit, at the first out-of-memory failure, on demand
//! and as periodic checkpoints. One at a time. A directory that cannot be
//! written costs one warning line on stderr, never the host process.

use super::config::Config;
use super::outdir::OutDir;
use super::snapshot::{self, OomInput};
use super::state::Shim;
use super::{counters, query};
use crate::report::{Api, Reason};
use std::path::PathBuf;
use std::sync::Mutex;

struct State {
    dir: Option<Result<OutDir, String>>,
    dumps: u32,
    warned: bool,
}

pub struct Writer {
    configured: Option<PathBuf>,
    state: Mutex<State>,
}

pub struct OomContext {
    pub ticks: u64,
    pub api: Api,
    pub device: u32,
    pub size: u64,
    pub code: i32,
    pub thread: u32,
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

impl Writer {
    pub fn new(config: &Config) -> Writer {
        Writer {
            configured: config.out_dir.clone(),
            state: Mutex::new(State {
                dir: None,
                dumps: 0,
                warned: false,
            }),
        }
    }
}

/// Writes a report; returns its path.
pub fn write(
    shim: &Shim,
    reason: Reason,
    detail: Option<String>,
    oom: Option<&OomInput>,
) -> Option<PathBuf> {
    let mut st = shim.writer.state.lock().ok()?;
    if st.dir.is_none() {
        st.dir = Some(OutDir::prepare(shim.writer.configured.as_deref()));
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
    let report = snapshot::build(shim, reason, detail, oom, out);
    let host = safe_name(report.process.hostname.as_deref().unwrap_or("host"));
    let suffix = match reason {
        Reason::Dump => {
            st.dumps += 1;
            format!("-{}", st.dumps)
        }
        _ => String::new(),
    };
    let name = format!(
        "kvscope-{host}-{}-{}{suffix}.json",
        report.process.pid,
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
            shim.log(&format!("wrote {}", p.display()));
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

fn any_calls() -> bool {
    counters::calls().iter().any(|&n| n > 0)
}

/// At exit, when the process made any CUDA allocation call.
pub fn write_exit(shim: &Shim) {
    if any_calls() {
        write(shim, Reason::Exit, None, None);
    }
}

/// The post-mortem of the first out-of-memory failure, from the failing
/// thread, right after the failed call returned.
pub fn write_oom(shim: &Shim, c: OomContext) {
    let mem_info = if shim.config.device_query {
        query::mem_info_current()
    } else {
        None
    };
    let input = OomInput {
        ticks: c.ticks,
        api: c.api,
        device: c.device,
        size: c.size,
        code: c.code,
        thread: c.thread,
        mem_info,
    };
    write(
        shim,
        Reason::Oom,
        Some(format!("{} of {} bytes failed", c.api.name(), c.size)),
        Some(&input),
    );
}

pub fn write_dump(shim: &Shim, detail: Option<String>) -> Option<PathBuf> {
    // Pools change between samples; a dump shows them as they are now.
    if shim.config.device_query {
        super::sampler::refresh_pools(shim, super::clock::ticks());
    }
    write(shim, Reason::Dump, detail, None)
}

pub fn write_checkpoint(shim: &Shim) {
    if any_calls() {
        write(shim, Reason::Checkpoint, None, None);
    }
}
