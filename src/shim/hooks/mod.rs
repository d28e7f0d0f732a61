//! The exported C entry points that interpose CUDA.
//!
//! Each hook calls its real function with the arguments untouched and
//! returns its result untouched; recording happens around the call and can
//! neither fail the call nor unwind into C. `runtime` holds the cuda*
//! hooks, `driver` the cu* allocation hooks and the context and pool calls
//! that tell the shim which device an allocation is on, `vmm` the virtual
//! memory calls, and `entry` the ways driver functions are handed out
//! (cuGetProcAddress, cudaGetDriverEntryPoint, dlsym).
//!
//! Their safety contract is CUDA's (and the C library's for dlsym): the
//! caller passes what the real function expects, and gets its behaviour.
#![allow(clippy::missing_safety_doc)]

pub mod driver;
pub mod entry;
pub mod runtime;
pub mod vmm;

use super::real::Real;
use std::ffi::c_void;

/// cudaErrorSharedObjectSymbolNotFound and CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND:
/// what a hook returns when no real function exists behind it.
pub const NOT_FOUND: i32 = 302;

/// A hook and the slot of its real function, for routing.
pub struct Hook {
    pub real: &'static Real,
    pub addr: *const c_void,
}

// SAFETY: addr is a function address, immutable.
unsafe impl Sync for Hook {}

/// Every hook the router may hand out in place of a real function.
pub fn all() -> impl Iterator<Item = &'static Hook> {
    runtime::HOOKS
        .iter()
        .chain(driver::HOOKS)
        .chain(vmm::HOOKS)
        .chain(entry::HOOKS)
}

/// The device of a memory pool, when the shim saw it made; else the thread's current device.
pub(crate) fn pool_device(pool: *mut c_void, current: u32) -> u32 {
    super::state::peek()
        .and_then(|s| s.devices.pool_device(pool as u64))
        .unwrap_or(current)
}

/// A `&'static CStr` from an identifier, at compile time.
macro_rules! cname {
    ($name:ident) => {
        match std::ffi::CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
            Ok(c) => c,
            Err(_) => panic!("bad symbol name"),
        }
    };
}
pub(crate) use cname;

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

/// `cudaMalloc`-style hook: `fn(args) -> i32`, an allocation whose address
/// is written through `out`. `size` and `stream` are expressions over the
/// arguments, evaluated after a successful call; `device` maps the thread's
/// current device to the allocation's.
macro_rules! alloc_hook {
    ($lib:ident, $slot:ident, $name:ident, $api:ident, ($($arg:ident : $ty:ty),*),
     out = $out:expr, size = $size:expr, device = $device:expr, stream = $stream:expr) => {
        pub static $slot: Real = Real::new(cname!($name), Lib::$lib);

        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> i32 {
            let Some(real) = real_fn!($slot, unsafe extern "C" fn($($ty),*) -> i32) else {
                return NOT_FOUND;
            };
            let call = Call::begin(Api::$api);
            // SAFETY: the caller's arguments, passed through untouched.
            let rc = unsafe { real($($arg),*) };
            // SAFETY: after a successful call the out-pointer holds the address.
            call.allocated(rc, || unsafe { out($out) } as u64, || $size as u64, $device, $stream as u64);
            rc
        }
    };
}
pub(crate) use alloc_hook;

/// `cudaFree`-style hook: the address is an argument.
macro_rules! free_hook {
    ($lib:ident, $slot:ident, $name:ident, $api:ident, ($($arg:ident : $ty:ty),*), address = $addr:expr) => {
        pub static $slot: Real = Real::new(cname!($name), Lib::$lib);

        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> i32 {
            let Some(real) = real_fn!($slot, unsafe extern "C" fn($($ty),*) -> i32) else {
                return NOT_FOUND;
            };
            let call = Call::begin(Api::$api);
            let address = $addr as u64;
            let removed = call.free_begin(address);
            // SAFETY: the caller's arguments, passed through untouched.
            let rc = unsafe { real($($arg),*) };
            call.free_end(address, removed, rc);
            rc
        }
    };
}
pub(crate) use free_hook;
