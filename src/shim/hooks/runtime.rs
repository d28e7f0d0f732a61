//! Handlers of the cuda* hooks that record no memory (the allocations and
//! frees themselves are generated whole from the table).
#![allow(non_snake_case)]

use crate::shim::lifecycle;
use crate::shim::track::tls;
use std::ffi::{c_int, c_void};

type Pool = *mut c_void;

/// Tracks the thread's current device (allocations do not name it).
///
/// # Safety
/// cudaSetDevice's contract.
pub unsafe fn cudaSetDevice(real: impl FnOnce() -> i32, device: c_int) -> i32 {
    let rc = real();
    if rc == 0 && device >= 0 && lifecycle::active() {
        tls::set_device(device as u32);
    }
    rc
}

/// The runtime's default pool is the driver's: the same handle, the same note.
///
/// # Safety
/// cudaDeviceGetDefaultMemPool's contract.
pub unsafe fn cudaDeviceGetDefaultMemPool(
    real: impl FnOnce() -> i32,
    pool: *mut Pool,
    device: c_int,
) -> i32 {
    // SAFETY: the same contract as the driver's call.
    unsafe { super::driver::cuDeviceGetDefaultMemPool(real, pool, device) }
}
