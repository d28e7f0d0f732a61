//! Virtual memory hooks: the expandable-segments pattern of PyTorch and
//! vLLM's sleep-mode allocator (reserve, create, map, set access, unmap,
//! release). Reached mostly through cudaGetDriverEntryPoint.

use super::{cname, out, Hook, NOT_FOUND};
use crate::report::Api;
use crate::shim::real::{real_fn, Lib, Real};
use crate::shim::record::{self, protect, Call};
use std::ffi::{c_ulonglong, c_void};

/// CUmemAllocationProp: type, requestedHandleTypes, location {type, id}, ...
#[repr(C)]
struct AllocPropHead {
    kind: i32,
    handle_types: i32,
    location_type: i32,
    location_id: i32,
}

pub static R_RESERVE: Real = Real::new(cname!(cuMemAddressReserve), Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAddressReserve(
    p: *mut u64,
    size: usize,
    align: usize,
    addr: u64,
    flags: c_ulonglong,
) -> i32 {
    let Some(real) = real_fn!(
        R_RESERVE,
        unsafe extern "C" fn(*mut u64, usize, usize, u64, c_ulonglong) -> i32
    ) else {
        return NOT_FOUND;
    };
    let call = Call::begin(Api::CuMemAddressReserve);
    // SAFETY: passed through untouched.
    let rc = unsafe { real(p, size, align, addr, flags) };
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

pub static R_ADDRESS_FREE: Real = Real::new(cname!(cuMemAddressFree), Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemAddressFree(va: u64, size: usize) -> i32 {
    let Some(real) = real_fn!(R_ADDRESS_FREE, unsafe extern "C" fn(u64, usize) -> i32) else {
        return NOT_FOUND;
    };
    let call = Call::begin(Api::CuMemAddressFree);
    let undo = call
        .recording()
        .and_then(|s| protect(|| s.vmm.address_free_begin(va)));
    // SAFETY: passed through untouched.
    let rc = unsafe { real(va, size) };
    if let (Some(shim), Some(undo), true) = (call.recording(), undo, rc != 0) {
        protect(|| shim.vmm.undo(&undo));
        call.failed_plain(rc, call.device(), size as u64);
    }
    rc
}

pub static R_CREATE: Real = Real::new(cname!(cuMemCreate), Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemCreate(
    h: *mut u64,
    size: usize,
    prop: *const c_void,
    flags: c_ulonglong,
) -> i32 {
    let Some(real) = real_fn!(
        R_CREATE,
        unsafe extern "C" fn(*mut u64, usize, *const c_void, c_ulonglong) -> i32
    ) else {
        return NOT_FOUND;
    };
    let call = Call::begin(Api::CuMemCreate);
    // SAFETY: passed through untouched.
    let rc = unsafe { real(h, size, prop, flags) };
    if let (Some(shim), Some(r)) = (call.recording(), call.recorder()) {
        let device = if prop.is_null() {
            call.device()
        } else {
            // SAFETY: a CUmemAllocationProp begins with these four ints.
            let head = unsafe { &*(prop as *const AllocPropHead) };
            if head.location_type == 1 && head.location_id >= 0 {
                head.location_id as u32
            } else {
                call.device()
            }
        };
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

pub static R_RELEASE: Real = Real::new(cname!(cuMemRelease), Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemRelease(handle: u64) -> i32 {
    let Some(real) = real_fn!(R_RELEASE, unsafe extern "C" fn(u64) -> i32) else {
        return NOT_FOUND;
    };
    let call = Call::begin(Api::CuMemRelease);
    let undo = call.recording().zip(call.recorder()).and_then(|(s, r)| {
        protect(|| {
            let u = s.vmm.release_begin(handle);
            record::vmm_destroyed(r, &u, Api::CuMemRelease);
            u
        })
    });
    // SAFETY: passed through untouched.
    let rc = unsafe { real(handle) };
    if let (Some(shim), Some(undo), true) = (call.recording(), undo, rc != 0) {
        if let Some(r) = call.recorder() {
            protect(|| record::vmm_undo(shim, r, &undo));
        }
        call.failed_plain(rc, call.device(), 0);
    }
    rc
}

pub static R_MAP: Real = Real::new(cname!(cuMemMap), Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemMap(
    va: u64,
    size: usize,
    offset: usize,
    handle: u64,
    flags: c_ulonglong,
) -> i32 {
    let Some(real) = real_fn!(
        R_MAP,
        unsafe extern "C" fn(u64, usize, usize, u64, c_ulonglong) -> i32
    ) else {
        return NOT_FOUND;
    };
    let call = Call::begin(Api::CuMemMap);
    // SAFETY: passed through untouched.
    let rc = unsafe { real(va, size, offset, handle, flags) };
    if let Some(shim) = call.recording() {
        if rc == 0 {
            protect(|| shim.vmm.map(va, size as u64, handle));
        } else {
            call.failed_plain(rc, call.device(), size as u64);
        }
    }
    rc
}

pub static R_UNMAP: Real = Real::new(cname!(cuMemUnmap), Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemUnmap(va: u64, size: usize) -> i32 {
    let Some(real) = real_fn!(R_UNMAP, unsafe extern "C" fn(u64, usize) -> i32) else {
        return NOT_FOUND;
    };
    let call = Call::begin(Api::CuMemUnmap);
    let undo = call.recording().zip(call.recorder()).and_then(|(s, r)| {
        protect(|| {
            let u = s.vmm.unmap_begin(va, size as u64);
            record::vmm_destroyed(r, &u, Api::CuMemUnmap);
            u
        })
    });
    // SAFETY: passed through untouched.
    let rc = unsafe { real(va, size) };
    if let (Some(shim), Some(undo), true) = (call.recording(), undo, rc != 0) {
        if let Some(r) = call.recorder() {
            protect(|| record::vmm_undo(shim, r, &undo));
        }
        call.failed_plain(rc, call.device(), size as u64);
    }
    rc
}

pub static HOOKS: &[Hook] = &[
    Hook {
        real: &R_RESERVE,
        addr: cuMemAddressReserve as *const c_void,
    },
    Hook {
        real: &R_ADDRESS_FREE,
        addr: cuMemAddressFree as *const c_void,
    },
    Hook {
        real: &R_CREATE,
        addr: cuMemCreate as *const c_void,
    },
    Hook {
        real: &R_RELEASE,
        addr: cuMemRelease as *const c_void,
    },
    Hook {
        real: &R_MAP,
        addr: cuMemMap as *const c_void,
    },
    Hook {
        real: &R_UNMAP,
        addr: cuMemUnmap as *const c_void,
    },
];
