//! cu* hooks: the driver API, reached by programs that link libcuda and,
//! through the router, by the runtime itself (nested: recorded only when no
//! outer hook is already recording the same allocation).

use super::{alloc_hook, cname, free_hook, out, pool_device, Hook, NOT_FOUND};
use crate::report::Api;
use crate::shim::devices::PoolInfo;
use crate::shim::real::{real_fn, Lib, Real};
use crate::shim::record::Call;
use crate::shim::{state, tls};
use std::ffi::{c_uint, c_void};

type Stream = *mut c_void;
type Pool = *mut c_void;
type Ctx = *mut c_void;

pub(crate) fn note_pool(handle: u64, device: u32, default_pool: bool) {
    if let Some(s) = state::get() {
        s.devices.set_pool(PoolInfo {
            handle,
            device,
            default_pool,
        });
    }
}

fn note_context(ctx: u64, device: u32) {
    if let Some(s) = state::get() {
        s.devices.set_context(ctx, device);
    }
}

alloc_hook!(Driver, R_CU_MEM_ALLOC, cuMemAlloc_v2, CuMemAlloc, (p: *mut u64, size: usize),
    out = p, size = size, device = |d| d, stream = 0);
alloc_hook!(Driver, R_CU_MEM_ALLOC_MANAGED, cuMemAllocManaged, CuMemAllocManaged,
    (p: *mut u64, size: usize, flags: c_uint),
    out = p, size = size, device = |d| d, stream = 0);
alloc_hook!(Driver, R_CU_MEM_ALLOC_PITCH, cuMemAllocPitch_v2, CuMemAllocPitch,
    (p: *mut u64, pitch: *mut usize, width: usize, height: usize, elem: c_uint),
    out = p, size = unsafe { out(pitch) } * height, device = |d| d, stream = 0);
alloc_hook!(Driver, R_CU_MEM_ALLOC_HOST, cuMemAllocHost_v2, CuMemAllocHost, (p: *mut *mut c_void, size: usize),
    out = p, size = size, device = |d| d, stream = 0);
alloc_hook!(Driver, R_CU_MEM_HOST_ALLOC, cuMemHostAlloc, CuMemHostAlloc,
    (p: *mut *mut c_void, size: usize, flags: c_uint),
    out = p, size = size, device = |d| d, stream = 0);
alloc_hook!(Driver, R_CU_MEM_ALLOC_ASYNC, cuMemAllocAsync, CuMemAllocAsync,
    (p: *mut u64, size: usize, s: Stream),
    out = p, size = size, device = |d| d, stream = s);
alloc_hook!(Driver, R_CU_MEM_ALLOC_ASYNC_PTSZ, cuMemAllocAsync_ptsz, CuMemAllocAsyncPtsz,
    (p: *mut u64, size: usize, s: Stream),
    out = p, size = size, device = |d| d, stream = s);
alloc_hook!(Driver, R_CU_MEM_ALLOC_FROM_POOL, cuMemAllocFromPoolAsync, CuMemAllocFromPoolAsync,
    (p: *mut u64, size: usize, pool: Pool, s: Stream),
    out = p, size = size, device = |d| pool_device(pool, d), stream = s);
alloc_hook!(Driver, R_CU_MEM_ALLOC_FROM_POOL_PTSZ, cuMemAllocFromPoolAsync_ptsz, CuMemAllocFromPoolAsyncPtsz,
    (p: *mut u64, size: usize, pool: Pool, s: Stream),
    out = p, size = size, device = |d| pool_device(pool, d), stream = s);

free_hook!(Driver, R_CU_MEM_FREE, cuMemFree_v2, CuMemFree, (p: u64), address = p);
free_hook!(Driver, R_CU_MEM_FREE_HOST, cuMemFreeHost, CuMemFreeHost, (p: *mut c_void), address = p);
free_hook!(Driver, R_CU_MEM_FREE_ASYNC, cuMemFreeAsync, CuMemFreeAsync, (p: u64, s: Stream), address = p);
free_hook!(Driver, R_CU_MEM_FREE_ASYNC_PTSZ, cuMemFreeAsync_ptsz, CuMemFreeAsyncPtsz,
    (p: u64, s: Stream), address = p);

pub static R_CU_PRIMARY_CTX_RETAIN: Real = Real::new(c"cuDevicePrimaryCtxRetain", Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(ctx: *mut Ctx, device: i32) -> i32 {
    let Some(real) = real_fn!(
        R_CU_PRIMARY_CTX_RETAIN,
        unsafe extern "C" fn(*mut Ctx, i32) -> i32
    ) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(ctx, device) };
    if rc == 0 && device >= 0 {
        // SAFETY: filled by the successful call.
        note_context(unsafe { out(ctx as *const Ctx) } as u64, device as u32);
    }
    rc
}

pub static R_CU_CTX_CREATE: Real = Real::new(c"cuCtxCreate_v2", Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxCreate_v2(ctx: *mut Ctx, flags: c_uint, device: i32) -> i32 {
    let Some(real) = real_fn!(
        R_CU_CTX_CREATE,
        unsafe extern "C" fn(*mut Ctx, c_uint, i32) -> i32
    ) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(ctx, flags, device) };
    if rc == 0 && device >= 0 {
        // SAFETY: filled by the successful call.
        note_context(unsafe { out(ctx as *const Ctx) } as u64, device as u32);
        if state::active() {
            tls::set_device(device as u32); // cuCtxCreate makes the context current
        }
    }
    rc
}

pub static R_CU_CTX_SET_CURRENT: Real = Real::new(c"cuCtxSetCurrent", Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuCtxSetCurrent(ctx: Ctx) -> i32 {
    let Some(real) = real_fn!(R_CU_CTX_SET_CURRENT, unsafe extern "C" fn(Ctx) -> i32) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(ctx) };
    if rc == 0 && !ctx.is_null() {
        if let Some(d) = state::peek().and_then(|s| s.devices.context_device(ctx as u64)) {
            tls::set_device(d);
        }
    }
    rc
}

pub static R_CU_DEFAULT_POOL: Real = Real::new(c"cuDeviceGetDefaultMemPool", Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuDeviceGetDefaultMemPool(pool: *mut Pool, device: i32) -> i32 {
    let Some(real) = real_fn!(
        R_CU_DEFAULT_POOL,
        unsafe extern "C" fn(*mut Pool, i32) -> i32
    ) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(pool, device) };
    if rc == 0 && device >= 0 {
        // SAFETY: filled by the successful call.
        note_pool(
            unsafe { out(pool as *const Pool) } as u64,
            device as u32,
            true,
        );
    }
    rc
}

/// CUmemPoolProps: allocType, handleTypes, location {type, id}, ...
#[repr(C)]
struct PoolPropsHead {
    alloc_type: i32,
    handle_types: i32,
    location_type: i32,
    location_id: i32,
}

pub static R_CU_MEM_POOL_CREATE: Real = Real::new(c"cuMemPoolCreate", Lib::Driver);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cuMemPoolCreate(pool: *mut Pool, props: *const c_void) -> i32 {
    let Some(real) = real_fn!(
        R_CU_MEM_POOL_CREATE,
        unsafe extern "C" fn(*mut Pool, *const c_void) -> i32
    ) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(pool, props) };
    if rc == 0 && !props.is_null() {
        // SAFETY: the driver accepted props, so it points to a CUmemPoolProps.
        let head = unsafe { &*(props as *const PoolPropsHead) };
        // SAFETY: filled by the successful call.
        let handle = unsafe { out(pool as *const Pool) } as u64;
        if head.location_type == 1 && head.location_id >= 0 {
            note_pool(handle, head.location_id as u32, false);
        }
    }
    rc
}

pub static HOOKS: &[Hook] = &[
    Hook {
        real: &R_CU_MEM_ALLOC,
        addr: cuMemAlloc_v2 as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_ALLOC_MANAGED,
        addr: cuMemAllocManaged as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_ALLOC_PITCH,
        addr: cuMemAllocPitch_v2 as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_ALLOC_HOST,
        addr: cuMemAllocHost_v2 as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_HOST_ALLOC,
        addr: cuMemHostAlloc as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_ALLOC_ASYNC,
        addr: cuMemAllocAsync as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_ALLOC_ASYNC_PTSZ,
        addr: cuMemAllocAsync_ptsz as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_ALLOC_FROM_POOL,
        addr: cuMemAllocFromPoolAsync as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_ALLOC_FROM_POOL_PTSZ,
        addr: cuMemAllocFromPoolAsync_ptsz as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_FREE,
        addr: cuMemFree_v2 as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_FREE_HOST,
        addr: cuMemFreeHost as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_FREE_ASYNC,
        addr: cuMemFreeAsync as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_FREE_ASYNC_PTSZ,
        addr: cuMemFreeAsync_ptsz as *const c_void,
    },
    Hook {
        real: &R_CU_PRIMARY_CTX_RETAIN,
        addr: cuDevicePrimaryCtxRetain as *const c_void,
    },
    Hook {
        real: &R_CU_CTX_CREATE,
        addr: cuCtxCreate_v2 as *const c_void,
    },
    Hook {
        real: &R_CU_CTX_SET_CURRENT,
        addr: cuCtxSetCurrent as *const c_void,
    },
    Hook {
        real: &R_CU_DEFAULT_POOL,
        addr: cuDeviceGetDefaultMemPool as *const c_void,
    },
    Hook {
        real: &R_CU_MEM_POOL_CREATE,
        addr: cuMemPoolCreate as *const c_void,
    },
];
