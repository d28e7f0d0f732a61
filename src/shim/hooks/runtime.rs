//! cuda* hooks: what PyTorch, vLLM and most programs call.

use super::{alloc_hook, cname, free_hook, out, pool_device, Hook, NOT_FOUND};
use crate::report::Api;
use crate::shim::real::{real_fn, Lib, Real};
use crate::shim::record::Call;
use crate::shim::{state, tls};
use std::ffi::{c_uint, c_void};

type Stream = *mut c_void;
type Pool = *mut c_void;

alloc_hook!(Runtime, R_CUDA_MALLOC, cudaMalloc, CudaMalloc, (p: *mut *mut c_void, size: usize),
    out = p, size = size, device = |d| d, stream = 0);
alloc_hook!(Runtime, R_CUDA_MALLOC_ASYNC, cudaMallocAsync, CudaMallocAsync,
    (p: *mut *mut c_void, size: usize, s: Stream),
    out = p, size = size, device = |d| d, stream = s);
alloc_hook!(Runtime, R_CUDA_MALLOC_ASYNC_PTSZ, cudaMallocAsync_ptsz, CudaMallocAsyncPtsz,
    (p: *mut *mut c_void, size: usize, s: Stream),
    out = p, size = size, device = |d| d, stream = s);
alloc_hook!(Runtime, R_CUDA_MALLOC_FROM_POOL, cudaMallocFromPoolAsync, CudaMallocFromPoolAsync,
    (p: *mut *mut c_void, size: usize, pool: Pool, s: Stream),
    out = p, size = size, device = |d| pool_device(pool, d), stream = s);
alloc_hook!(Runtime, R_CUDA_MALLOC_FROM_POOL_PTSZ, cudaMallocFromPoolAsync_ptsz, CudaMallocFromPoolAsyncPtsz,
    (p: *mut *mut c_void, size: usize, pool: Pool, s: Stream),
    out = p, size = size, device = |d| pool_device(pool, d), stream = s);
alloc_hook!(Runtime, R_CUDA_MALLOC_MANAGED, cudaMallocManaged, CudaMallocManaged,
    (p: *mut *mut c_void, size: usize, flags: c_uint),
    out = p, size = size, device = |d| d, stream = 0);
alloc_hook!(Runtime, R_CUDA_MALLOC_PITCH, cudaMallocPitch, CudaMallocPitch,
    (p: *mut *mut c_void, pitch: *mut usize, width: usize, height: usize),
    out = p, size = unsafe { out(pitch) } * height, device = |d| d, stream = 0);
alloc_hook!(Runtime, R_CUDA_MALLOC_HOST, cudaMallocHost, CudaMallocHost, (p: *mut *mut c_void, size: usize),
    out = p, size = size, device = |d| d, stream = 0);
alloc_hook!(Runtime, R_CUDA_HOST_ALLOC, cudaHostAlloc, CudaHostAlloc,
    (p: *mut *mut c_void, size: usize, flags: c_uint),
    out = p, size = size, device = |d| d, stream = 0);

free_hook!(Runtime, R_CUDA_FREE, cudaFree, CudaFree, (p: *mut c_void), address = p);
free_hook!(Runtime, R_CUDA_FREE_ASYNC, cudaFreeAsync, CudaFreeAsync, (p: *mut c_void, s: Stream), address = p);
free_hook!(Runtime, R_CUDA_FREE_ASYNC_PTSZ, cudaFreeAsync_ptsz, CudaFreeAsyncPtsz,
    (p: *mut c_void, s: Stream), address = p);
free_hook!(Runtime, R_CUDA_FREE_HOST, cudaFreeHost, CudaFreeHost, (p: *mut c_void), address = p);

pub static R_CUDA_SET_DEVICE: Real = Real::new(c"cudaSetDevice", Lib::Runtime);

/// Tracks the thread's current device (allocations do not name it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cudaSetDevice(device: i32) -> i32 {
    let Some(real) = real_fn!(R_CUDA_SET_DEVICE, unsafe extern "C" fn(i32) -> i32) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(device) };
    if rc == 0 && device >= 0 && state::active() {
        tls::set_device(device as u32);
    }
    rc
}

pub static R_CUDA_DEFAULT_POOL: Real = Real::new(c"cudaDeviceGetDefaultMemPool", Lib::Runtime);

#[unsafe(no_mangle)]
pub unsafe extern "C" fn cudaDeviceGetDefaultMemPool(pool: *mut Pool, device: i32) -> i32 {
    let Some(real) = real_fn!(
        R_CUDA_DEFAULT_POOL,
        unsafe extern "C" fn(*mut Pool, i32) -> i32
    ) else {
        return NOT_FOUND;
    };
    // SAFETY: passed through untouched.
    let rc = unsafe { real(pool, device) };
    if rc == 0 && device >= 0 {
        // SAFETY: filled by the successful call.
        let handle = unsafe { out(pool as *const Pool) } as u64;
        super::driver::note_pool(handle, device as u32, true);
    }
    rc
}

pub static HOOKS: &[Hook] = &[
    Hook {
        real: &R_CUDA_MALLOC,
        addr: cudaMalloc as *const c_void,
    },
    Hook {
        real: &R_CUDA_MALLOC_ASYNC,
        addr: cudaMallocAsync as *const c_void,
    },
    Hook {
        real: &R_CUDA_MALLOC_ASYNC_PTSZ,
        addr: cudaMallocAsync_ptsz as *const c_void,
    },
    Hook {
        real: &R_CUDA_MALLOC_FROM_POOL,
        addr: cudaMallocFromPoolAsync as *const c_void,
    },
    Hook {
        real: &R_CUDA_MALLOC_FROM_POOL_PTSZ,
        addr: cudaMallocFromPoolAsync_ptsz as *const c_void,
    },
    Hook {
        real: &R_CUDA_MALLOC_MANAGED,
        addr: cudaMallocManaged as *const c_void,
    },
    Hook {
        real: &R_CUDA_MALLOC_PITCH,
        addr: cudaMallocPitch as *const c_void,
    },
    Hook {
        real: &R_CUDA_MALLOC_HOST,
        addr: cudaMallocHost as *const c_void,
    },
    Hook {
        real: &R_CUDA_HOST_ALLOC,
        addr: cudaHostAlloc as *const c_void,
    },
    Hook {
        real: &R_CUDA_FREE,
        addr: cudaFree as *const c_void,
    },
    Hook {
        real: &R_CUDA_FREE_ASYNC,
        addr: cudaFreeAsync as *const c_void,
    },
    Hook {
        real: &R_CUDA_FREE_ASYNC_PTSZ,
        addr: cudaFreeAsync_ptsz as *const c_void,
    },
    Hook {
        real: &R_CUDA_FREE_HOST,
        addr: cudaFreeHost as *const c_void,
    },
    Hook {
        real: &R_CUDA_SET_DEVICE,
        addr: cudaSetDevice as *const c_void,
    },
    Hook {
        real: &R_CUDA_DEFAULT_POOL,
        addr: cudaDeviceGetDefaultMemPool as *const c_void,
    },
];
