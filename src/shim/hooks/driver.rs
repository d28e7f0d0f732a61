//! Handlers of the cu* hooks that record no memory but tell the shim which
//! device a context or a pool belongs to, and which device the thread is on.
//! (The driver's allocations and frees are generated whole from the table;
//! the runtime reaches them too, nested: recorded only when no outer hook is
//! already recording the same allocation.)
#![allow(non_snake_case)]

use super::out;
use crate::shim::cuda::PropsHead;
use crate::shim::lifecycle;
use crate::shim::track::devices::PoolInfo;
use crate::shim::track::tls;
use std::ffi::{c_int, c_uint, c_void};

type Pool = *mut c_void;
type Ctx = *mut c_void;

pub(crate) fn note_pool(handle: u64, device: u32, default_pool: bool) {
    if let Some(s) = lifecycle::get() {
        s.track.devices.set_pool(PoolInfo {
            handle,
            device,
            default_pool,
        });
    }
}

fn note_context(ctx: u64, device: u32) {
    if let Some(s) = lifecycle::get() {
        s.track.devices.set_context(ctx, device);
    }
}

/// # Safety
/// cuDevicePrimaryCtxRetain's contract.
pub unsafe fn cuDevicePrimaryCtxRetain(
    real: impl FnOnce() -> i32,
    ctx: *mut Ctx,
    device: c_int,
) -> i32 {
    let rc = real();
    if rc == 0 && device >= 0 {
        // SAFETY: filled by the successful call.
        note_context(unsafe { out(ctx as *const Ctx) } as u64, device as u32);
    }
    rc
}

/// # Safety
/// cuCtxCreate_v2's contract.
pub unsafe fn cuCtxCreate_v2(
    real: impl FnOnce() -> i32,
    ctx: *mut Ctx,
    _flags: c_uint,
    device: c_int,
) -> i32 {
    let rc = real();
    if rc == 0 && device >= 0 {
        // SAFETY: filled by the successful call.
        note_context(unsafe { out(ctx as *const Ctx) } as u64, device as u32);
        if lifecycle::active() {
            tls::set_device(device as u32); // cuCtxCreate makes the context current
        }
    }
    rc
}

/// # Safety
/// cuCtxSetCurrent's contract.
pub unsafe fn cuCtxSetCurrent(real: impl FnOnce() -> i32, ctx: Ctx) -> i32 {
    let rc = real();
    if rc == 0 && !ctx.is_null() {
        if let Some(d) = lifecycle::peek().and_then(|s| s.track.devices.context_device(ctx as u64))
        {
            tls::set_device(d);
        }
    }
    rc
}

/// # Safety
/// cuDeviceGetDefaultMemPool's contract.
pub unsafe fn cuDeviceGetDefaultMemPool(
    real: impl FnOnce() -> i32,
    pool: *mut Pool,
    device: c_int,
) -> i32 {
    let rc = real();
    if rc == 0 && device >= 0 {
        // SAFETY: filled by the successful call.
        let handle = unsafe { out(pool as *const Pool) } as u64;
        note_pool(handle, device as u32, true);
    }
    rc
}

/// # Safety
/// cuMemPoolCreate's contract.
pub unsafe fn cuMemPoolCreate(
    real: impl FnOnce() -> i32,
    pool: *mut Pool,
    props: *const c_void,
) -> i32 {
    let rc = real();
    if rc == 0 {
        // SAFETY: the driver accepted props, so it is a CUmemPoolProps.
        if let Some(device) = unsafe { PropsHead::device(props) } {
            // SAFETY: filled by the successful call.
            let handle = unsafe { out(pool as *const Pool) } as u64;
            note_pool(handle, device, false);
        }
    }
    rc
}
