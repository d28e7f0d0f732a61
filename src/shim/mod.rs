//! Everything that runs inside the host process. Data flows one way:
//!
//! ```text
//!   hooks/  (interposition: the exported C entry points, one table row each)
//!     |  record a call
//!     v
//!   track/  (the live table, counters, events, failures, the OOM capture)
//!     ^  read
//!     |
//!   output/ (timeline, snapshot, writer, background thread, control requests)
//! ```
//!
//! `lifecycle` starts the shim on first use and wires the parts together;
//! `config` is read once at start; `cuda/` is what the shim knows of CUDA's
//! ABI and the driver functions it calls itself; `pluggable/` is PyTorch's
//! pluggable allocator, `exports` kvscope's own C API, and `signals` the
//! final report on a terminating signal.

pub mod config;
pub mod cuda;
pub mod exports;
pub mod hooks;
pub mod lifecycle;
pub mod output;
pub mod pluggable;
pub mod signals;
pub mod track;
