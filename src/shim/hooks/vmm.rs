//! Handlers of the virtual memory hooks: the expandable-segments pattern of
//! PyTorch and vLLM's sleep-mode allocator (reserve, create, map, unmap,
//! release). Reached mostly through cudaGetDriverEntryPoint. A release or
//! an unmap is recorded before the real call (the handle can be reused at
//! once) and undone if the call fails.
#![allow(non_snake_case)]

use super::out;
use crate::shim::cuda::PropsHead;
use crate::shim::track::guard::protect;
use crate::shim::track::record::{self, Call};
use std::ffi::{c_ulonglong, c_void};

/// # Safety
/// cuMemAddressReserve's contract.
pub unsafe fn cuMemAddressReserve(
    call: Call,
    real: impl FnOnce() -> i32,
    p: *mut u64,
    size: usize,
    _align: usize,
    _addr: u64,
    _flags: c_ulonglong,
) -> i32 {
    let rc = real();
    if let Some(shim) = call.recording() {
        if rc == 0 {
            // SAFETY: filled by the successful call.
            let va = unsafe { out(p) };
            protect(|| shim.vmm.reserve(va, size as u64));
        } else {
            call.failed_plain(rc, call.device(), size as u64);
        }
    }
    rc
}

/// # Safety
/// cuMemAddressFree's contract.
pub unsafe fn cuMemAddressFree(
    call: Call,
    real: impl FnOnce() -> i32,
    va: u64,
    size: usize,
) -> i32 {
    let undo = call
        .recording()
        .and_then(|s| protect(|| s.vmm.address_free_begin(va)));
    let rc = real();
    if let (Some(shim), Some(undo), true) = (call.recording(), undo, rc != 0) {
        protect(|| shim.vmm.undo(&undo));
        call.failed_plain(rc, call.device(), size as u64);
    }
    rc
}

/// # Safety
/// cuMemCreate's contract.
pub unsafe fn cuMemCreate(
    call: Call,
    real: impl FnOnce() -> i32,
    h: *mut u64,
    size: usize,
    prop: *const c_void,
    _flags: c_ulonglong,
) -> i32 {
    let rc = real();
    if let (Some(shim), Some(r)) = (call.recording(), call.recorder()) {
        // SAFETY: the driver took prop as a CUmemAllocationProp.
        let device = unsafe { PropsHead::device(prop) }.unwrap_or_else(|| call.device());
        if rc == 0 {
            // SAFETY: filled by the successful call.
            let handle = unsafe { out(h) };
            protect(|| record::vmm_create(shim, r, handle, device, size as u64));
        } else {
            call.failed_plain(rc, device, size as u64);
        }
    }
    rc
}

/// # Safety
/// cuMemRelease's contract.
pub unsafe fn cuMemRelease(call: Call, real: impl FnOnce() -> i32, handle: u64) -> i32 {
    let undo = call.recording().zip(call.recorder()).and_then(|(s, r)| {
        protect(|| {
            let u = s.vmm.release_begin(handle);
            record::vmm_destroyed(r, &u, call.api());
            u
        })
    });
    let rc = real();
    if let (Some(shim), Some(r), Some(undo), true) =
        (call.recording(), call.recorder(), undo, rc != 0)
    {
        protect(|| record::vmm_undo(shim, r, &undo));
        call.failed_plain(rc, call.device(), 0);
    }
    rc
}

/// # Safety
/// cuMemMap's contract.
pub unsafe fn cuMemMap(
    call: Call,
    real: impl FnOnce() -> i32,
    va: u64,
    size: usize,
    _offset: usize,
    handle: u64,
    _flags: c_ulonglong,
) -> i32 {
    let rc = real();
    if let Some(shim) = call.recording() {
        if rc == 0 {
            protect(|| shim.vmm.map(va, size as u64, handle));
        } else {
            call.failed_plain(rc, call.device(), size as u64);
        }
    }
    rc
}

/// # Safety
/// cuMemUnmap's contract.
pub unsafe fn cuMemUnmap(call: Call, real: impl FnOnce() -> i32, va: u64, size: usize) -> i32 {
    let undo = call.recording().zip(call.recorder()).and_then(|(s, r)| {
        protect(|| {
            let u = s.vmm.unmap_begin(va, size as u64);
            record::vmm_destroyed(r, &u, call.api());
            u
        })
    });
    let rc = real();
    if let (Some(shim), Some(r), Some(undo), true) =
        (call.recording(), call.recorder(), undo, rc != 0)
    {
        protect(|| record::vmm_undo(shim, r, &undo));
        call.failed_plain(rc, call.device(), size as u64);
    }
    rc
}
