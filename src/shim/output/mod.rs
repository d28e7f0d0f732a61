//! Output: what the shim makes of the recorded state. The `timeline` of
//! periodic points, `callers` (return addresses resolved to files),
//! `snapshot` (the state as a report, with the `process` facts), the `writer` that puts reports into the report directory
//! (`outdir`), the background thread (`sampler`) and the requests it
//! applies from outside (`control`), woken through `wake`; the live
//! `state_file` the exporter reads. Output pulls from `track`; it is never
//! called from a hook.

pub mod callers;
pub mod control;
pub mod outdir;
pub mod process;
pub mod sampler;
pub mod snapshot;
pub mod state_file;
pub mod timeline;
pub mod wake;
pub mod writer;
