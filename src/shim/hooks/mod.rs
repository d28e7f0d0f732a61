//! Interposition: the exported C entry points that stand in for CUDA's.
//!
//! Every hooked function is one row of the table in `report/hooked.rs`;
//! `table` turns the rows into the exported hooks, the slots of their real
//! functions (`real`), the routing rows and the export list. Each hook calls
//! its real function with the arguments untouched and returns its result
//! untouched; recording (`track`) happens around the call and can neither
//! fail the call nor unwind into C. Plain allocations and frees are
//! generated whole; the rest have a handler here: `runtime` and `driver`
//! (which device, context or pool later calls are about), `vmm` (virtual
//! memory), `entry` (how driver functions are handed out: cuGetProcAddress,
//! cudaGetDriverEntryPoint, dlsym), routed by `route`.
//!
//! A handler gets the hook's `Call` (for recorded rows), `real`: a thunk
//! that makes the real call with the caller's arguments (it cannot change
//! them), and the arguments to look at.

pub mod caller;
pub mod driver;
pub mod entry;
pub mod real;
pub mod route;
pub mod runtime;
pub mod signal;
pub mod table;
pub mod vmm;

use crate::report::Api;
use crate::shim::lifecycle;
use crate::shim::track::record::Call;
use crate::shim::track::tls::Tls;
use real::Real;
use std::ffi::c_void;

/// A hook and the slot of its real function, for routing.
pub struct Hook {
    pub real: &'static Real,
    pub addr: *const c_void,
}

// SAFETY: addr is a function address, immutable.
unsafe impl Sync for Hook {}

/// A hooked call of `api` from `caller` (the hook's return address),
/// recording when the shim is on (started here on first use) and this is the
/// thread's outermost hook.
#[inline(always)]
pub fn call(api: Api, caller: u64) -> Call {
    Call::begin(api, caller, lifecycle::tracker)
}

/// The outermost hooked call of `api` on thread `t` (its depth checked by
/// the hook), made from `caller`.
#[inline(always)]
pub fn outermost(api: Api, t: &'static Tls, caller: u64) -> Call {
    Call::outermost(api, t, caller, lifecycle::tracker)
}

/// The device of a memory pool, when the shim saw it made; else the thread's current device.
pub(crate) fn pool_device(pool: *mut c_void, current: u32) -> u32 {
    lifecycle::peek()
        .and_then(|s| s.track.devices.pool_device(pool as u64))
        .unwrap_or(current)
}

/// Reads an out-pointer the real call filled (null-safe).
///
/// # Safety
/// `p` is null or points to a readable `T`.
pub(crate) unsafe fn out<T: Copy + Default>(p: *const T) -> T {
    if p.is_null() {
        T::default()
    } else {
        // SAFETY: the caller passed a valid out-pointer to the real call.
        unsafe { *p }
    }
}
