//! How driver functions are handed out: cuGetProcAddress[_v2],
//! cudaGetDriverEntryPoint[ByVersion] and dlsym. Each calls the real lookup
//! and swaps the result for the matching hook (see `route`).

use super::{Hook, NOT_FOUND};
use crate::shim::real::{self, real_fn, Lib, Real};
use crate::shim::record::protect;
use crate::shim::{route, state};
use std::ffi::{c_char, c_int, c_ulonglong, c_void, CStr};

/// Swaps `*pfn` for its hook, when the shim is on.
///
/// # Safety
/// `symbol` is null or NUL-terminated; `pfn` is null or valid.
unsafe fn route_out(symbol: *const c_char, pfn: *mut *mut c_void, version: i32, flags: u64) {
    if symbol.is_null() || pfn.is_null() || state::get().is_none() {
        return;
    }
    protect(|| {
        // SAFETY: see the function's contract.
        let (name, real) = unsafe { (CStr::from_ptr(symbol), *pfn) };
        let routed = route::entry_point(name, version, flags, real);
        if routed != real {
            // SAFETY: pfn is the caller's valid out-pointer.
            unsafe { *pfn = routed };
        }
    });
}

pub static R_GET_PROC_ADDRESS_V2: Real = Real::new(c"cuGetProcAddress_v2", Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: c_ulonglong,
    status: *mut c_int,
) -> i32 {
    type F = unsafe extern "C" fn(
        *const c_char,
        *mut *mut c_void,
        c_int,
        c_ulonglong,
        *mut c_int,
    ) -> i32;
    let Some(real) = real_fn!(R_GET_PROC_ADDRESS_V2, F) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(symbol, pfn, version, flags, status) };
    if rc == 0 {
        // SAFETY: the caller's arguments.
        unsafe { route_out(symbol, pfn, version, flags) };
    }
    rc
}

pub static R_GET_PROC_ADDRESS: Real = Real::new(c"cuGetProcAddress", Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: c_ulonglong,
) -> i32 {
    type F = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, c_ulonglong) -> i32;
    let Some(real) = real_fn!(R_GET_PROC_ADDRESS, F) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(symbol, pfn, version, flags) };
    if rc == 0 {
        // SAFETY: the caller's arguments.
        unsafe { route_out(symbol, pfn, version, flags) };
    }
    rc
}

/// The CUDA version cudaGetDriverEntryPoint asks for: the runtime's own,
/// which kvscope supports from 12.0.
const RUNTIME_VERSION: i32 = 12000;

pub static R_GET_DRIVER_ENTRY_POINT: Real = Real::new(c"cudaGetDriverEntryPoint", Lib::Runtime);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cudaGetDriverEntryPoint(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    flags: c_ulonglong,
    status: *mut c_int,
) -> i32 {
    type F = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_ulonglong, *mut c_int) -> i32;
    let Some(real) = real_fn!(R_GET_DRIVER_ENTRY_POINT, F) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(symbol, pfn, flags, status) };
    if rc == 0 {
        // SAFETY: the caller's arguments.
        unsafe { route_out(symbol, pfn, RUNTIME_VERSION, flags) };
    }
    rc
}

pub static R_GET_DRIVER_ENTRY_POINT_BY_VERSION: Real =
    Real::new(c"cudaGetDriverEntryPointByVersion", Lib::Runtime);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cudaGetDriverEntryPointByVersion(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: u32,
    flags: c_ulonglong,
    status: *mut c_int,
) -> i32 {
    type F =
        unsafe extern "C" fn(*const c_char, *mut *mut c_void, u32, c_ulonglong, *mut c_int) -> i32;
    let Some(real) = real_fn!(R_GET_DRIVER_ENTRY_POINT_BY_VERSION, F) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(symbol, pfn, version, flags, status) };
    if rc == 0 {
        // SAFETY: the caller's arguments.
        unsafe { route_out(symbol, pfn, version as i32, flags) };
    }
    rc
}

/// dlsym for every handle but RTLD_NEXT: the real lookup, then the hook
/// for a hooked CUDA name.
extern "C" fn dlsym_routed(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    let p = match real::dlsym_fn() {
        // SAFETY: the caller's arguments, passed through.
        Some(f) => unsafe { f(handle, symbol) },
        None => return std::ptr::null_mut(),
    };
    if p.is_null() || symbol.is_null() {
        return p;
    }
    // SAFETY: symbol is NUL-terminated (the real dlsym just read it).
    let name = unsafe { CStr::from_ptr(symbol) };
    if !name.to_bytes().starts_with(b"cu") || state::get().is_none() {
        return p;
    }
    protect(|| route::by_name(name, p)).unwrap_or(p)
}

extern "C" fn real_dlsym_address() -> *mut c_void {
    real::dlsym_fn().map_or(std::ptr::null_mut(), |f| f as *mut c_void)
}

/// dlsym. RTLD_NEXT lookups are resolved relative to the caller's object,
/// which the real dlsym finds from its return address: so for them this is
/// a bare tail jump into the real dlsym, leaving the caller's return address
/// in place. Everything else goes through `dlsym_routed`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "cmp rdi, -1",
        "je 2f",
        "jmp {routed}",
        "2:",
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {real}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "test rax, rax",
        "jz 3f",
        "jmp rax",
        "3:",
        "ret",
        routed = sym dlsym_routed,
        real = sym real_dlsym_address,
    )
}

pub static HOOKS: &[Hook] = &[
    Hook {
        real: &R_GET_PROC_ADDRESS_V2,
        addr: cuGetProcAddress_v2 as *const c_void,
    },
    Hook {
        real: &R_GET_PROC_ADDRESS,
        addr: cuGetProcAddress as *const c_void,
    },
    Hook {
        real: &R_GET_DRIVER_ENTRY_POINT,
        addr: cudaGetDriverEntryPoint as *const c_void,
    },
    Hook {
        real: &R_GET_DRIVER_ENTRY_POINT_BY_VERSION,
        addr: cudaGetDriverEntryPointByVersion as *const c_void,
    },
];
