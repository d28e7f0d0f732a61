//! Device-level reading, without the shim: what each process holds on each
//! GPU as the driver counts it, read through NVML (`nvml.rs`, loaded at run
//! time, never a CUDA context), with NVML's host PIDs mapped into this PID
//! namespace where that can be done (`pidns.rs`). `probe::read` gives one
//! typed `probe::Snapshot`: the seam a device-level diagnosis plugs into
//! (see docs/architecture.md, "Device-level reading").

pub mod nvml;
pub mod pidns;
pub mod probe;
