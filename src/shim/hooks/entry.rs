//! How driver functions are handed out: cuGetProcAddress[_v2],
//! cudaGetDriverEntryPoint[ByVersion] and dlsym. Each makes the real lookup
//! and swaps the result for the matching hook (see `route`), given the
//! routing rows of the table.
#![allow(non_snake_case)]

use super::{route, Hook};
use crate::shim::cuda::loader;
use crate::shim::cuda::RUNTIME_VERSION;
use crate::shim::lifecycle;
use crate::shim::track::guard::protect;
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CStr};

/// Swaps `*pfn` for its hook after a successful lookup, when the shim is on.
///
/// # Safety
/// `symbol` is null or NUL-terminated; `pfn` is null or valid.
unsafe fn route_out(
    hooks: &[Hook],
    rc: i32,
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: i32,
    flags: u64,
) -> i32 {
    if rc != 0 || symbol.is_null() || pfn.is_null() || lifecycle::get().is_none() {
        return rc;
    }
    protect(|| {
        // SAFETY: see the function's contract.
        let (name, real) = unsafe { (CStr::from_ptr(symbol), *pfn) };
        let routed = route::entry_point(hooks, name, version, flags, real);
        if routed != real {
            // SAFETY: pfn is the caller's valid out-pointer.
            unsafe { *pfn = routed };
        }
    });
    rc
}

/// # Safety
/// cuGetProcAddress_v2's contract.
pub unsafe fn cuGetProcAddress_v2(
    hooks: &[Hook],
    real: impl FnOnce() -> i32,
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: c_ulonglong,
    _status: *mut c_int,
) -> i32 {
    // SAFETY: the caller's arguments.
    unsafe { route_out(hooks, real(), symbol, pfn, version, flags) }
}

/// # Safety
/// cuGetProcAddress's contract.
pub unsafe fn cuGetProcAddress(
    hooks: &[Hook],
    real: impl FnOnce() -> i32,
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: c_ulonglong,
) -> i32 {
    // SAFETY: the caller's arguments.
    unsafe { route_out(hooks, real(), symbol, pfn, version, flags) }
}

/// # Safety
/// cudaGetDriverEntryPoint's contract.
pub unsafe fn cudaGetDriverEntryPoint(
    hooks: &[Hook],
    real: impl FnOnce() -> i32,
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    flags: c_ulonglong,
    _status: *mut c_int,
) -> i32 {
    // SAFETY: the caller's arguments.
    unsafe { route_out(hooks, real(), symbol, pfn, RUNTIME_VERSION, flags) }
}

/// # Safety
/// cudaGetDriverEntryPointByVersion's contract.
pub unsafe fn cudaGetDriverEntryPointByVersion(
    hooks: &[Hook],
    real: impl FnOnce() -> i32,
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_uint,
    flags: c_ulonglong,
    _status: *mut c_int,
) -> i32 {
    // SAFETY: the caller's arguments.
    unsafe { route_out(hooks, real(), symbol, pfn, version as i32, flags) }
}

/// dlsym for every handle but RTLD_NEXT: the real lookup, then the hook
/// for a hooked CUDA name.
///
/// # Safety
/// dlsym's contract: `handle` is valid, `symbol` null or NUL-terminated.
pub unsafe fn dlsym_routed(
    hooks: &[Hook],
    handle: *mut c_void,
    symbol: *const c_char,
) -> *mut c_void {
    let p = match loader::dlsym_fn() {
        // SAFETY: the caller's arguments, passed through.
        Some(f) => unsafe { f(handle, symbol) },
        None => return std::ptr::null_mut(),
    };
    if p.is_null() || symbol.is_null() {
        return p;
    }
    // SAFETY: symbol is NUL-terminated (the real dlsym just read it).
    let name = unsafe { CStr::from_ptr(symbol) };
    if !name.to_bytes().starts_with(b"cu") || lifecycle::get().is_none() {
        return p;
    }
    protect(|| route::by_name(hooks, name, p)).unwrap_or(p)
}

/// The C library's dlsym, for the RTLD_NEXT path of the dlsym hook.
pub extern "C" fn real_dlsym_address() -> *mut c_void {
    loader::dlsym_fn().map_or(std::ptr::null_mut(), |f| f as *mut c_void)
}
