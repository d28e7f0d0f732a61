//! Everything that runs inside the host process.
//!
//! Layout: `hooks/` are the exported C entry points; they call `record`,
//! which updates the live `table`, the per-thread `counters` and the
//! flight-recorder `events`. `writer` turns a snapshot into a report file in
//! the directory `outdir` prepares; `sampler` is the one background thread
//! (timeline, external markers and dumps). `state` owns the process-wide
//! state and its lazy start.

pub mod clock;
pub mod config;
pub mod counters;
pub mod devices;
pub mod events;
pub mod exports;
pub mod failures;
pub mod hooks;
pub mod markers;
pub mod outdir;
pub mod pluggable;
pub mod query;
pub mod real;
pub mod record;
pub mod route;
pub mod sampler;
pub mod snapshot;
pub mod spin;
pub mod state;
pub mod table;
pub mod tls;
pub mod vmm;
pub mod writer;
