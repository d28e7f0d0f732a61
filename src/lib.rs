//! kvscope's shim: `libkvscope.so`, loaded into a serving process with
//! `LD_PRELOAD` or as PyTorch's pluggable CUDA allocator. It records every
//! device allocation in a lock-light live table and writes reports.
//!
//! Only the shim and the shared report schema live in this crate root; the
//! reader (`src/main.rs`) compiles `report` itself and never links this
//! library, so none of the hook symbols (`cudaMalloc`, `dlsym`, ...) can end
//! up in the `kvscope` binary.

// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod report;
pub mod shim;
