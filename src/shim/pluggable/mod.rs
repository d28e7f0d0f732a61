//! PyTorch's pluggable CUDA allocator, backed by stream-ordered pools:
//!
//! ```python
//! alloc = torch.cuda.memory.CUDAPluggableAllocator("libkvscope.so", "kvscope_malloc", "kvscope_free")
//! torch.cuda.memory.change_current_allocator(alloc)
//! ```
//!
//! Every tensor allocation reaches the shim with the size the application
//! asked for, its device and stream. Memory comes from one pool per device
//! that kvscope creates (cuMemPoolCreate) with a release threshold of
//! UINT64_MAX, so freed memory stays cached for the next allocation as in
//! PyTorch's own cudaMallocAsync backend, through the driver API on the
//! stream PyTorch passes (a process has one libcuda; a second runtime must
//! not be loaded beside PyTorch's). The driver is found at run time in the
//! libcuda the process already loaded (or loaded here), never linked.
//!
//! `pools` holds the per-device pools and what record_stream asks for.

mod pools;

use crate::report::{Api, Space};
use crate::shim::cuda::driver::{self, Driver};
use crate::shim::cuda::{ERROR_NOT_INITIALIZED, ERROR_OUT_OF_MEMORY};
use crate::shim::hooks::caller::with_caller;
use crate::shim::lifecycle;
use crate::shim::track::counters::{fold, lane};
use crate::shim::track::devices::MAX_DEVICES;
use crate::shim::track::guard::protect;
use crate::shim::track::record::Call;
use crate::shim::track::table::Entry;
use crate::shim::track::MODE_PLUGGABLE;
use pools::{ensure_context, pool, wait_for_other_streams, POOLS};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering::*;

type Stream = *mut c_void;

/// The driver, loaded and initialised on first use (the allocator may be the
/// first to use CUDA in the process); setting up never unwinds into C.
#[inline]
fn driver() -> Option<&'static Driver> {
    driver::ready().or_else(|| protect(driver::load).flatten())
}

#[inline(always)]
fn call(api: Api, caller: u64) -> Call {
    Call::begin(api, caller, lifecycle::tracker)
}

fn device_index(device: c_int) -> Option<usize> {
    (0..MAX_DEVICES as c_int)
        .contains(&device)
        .then_some(device as usize)
}

with_caller!(
    /// `void* alloc(size_t size, int device, cudaStream_t stream)`.
    ///
    /// # Safety
    /// `stream` is a live stream of `device`, or a default-stream handle.
    kvscope_malloc(size: usize, device: c_int, stream: Stream) -> *mut c_void => malloc
);

/// `kvscope_malloc`, called from `caller`.
unsafe extern "C" fn malloc(
    size: usize,
    device: c_int,
    stream: Stream,
    caller: u64,
) -> *mut c_void {
    let call = call(Api::KvscopeMalloc, caller);
    let (Some(d), Some(dev)) = (driver(), device_index(device)) else {
        call.allocated(
            ERROR_NOT_INITIALIZED,
            || 0,
            || size as u64,
            |_| device.max(0) as u32,
            stream as u64,
        );
        return std::ptr::null_mut();
    };
    if size == 0 {
        return std::ptr::null_mut();
    }
    // set_memory_fraction: beyond the cap, out of memory, as PyTorch's allocators do.
    let cap = POOLS.caps[dev].load(Relaxed);
    if cap != u64::MAX && fold(lane(Space::Device, dev as u32)).live_bytes() + size as u64 > cap {
        call.allocated(
            ERROR_OUT_OF_MEMORY,
            || 0,
            || size as u64,
            |_| dev as u32,
            stream as u64,
        );
        return std::ptr::null_mut();
    }
    let mut ptr = 0u64;
    // The context and the pool are set up on first use, inside `protect`.
    let ready = protect(|| match ensure_context(d, device) {
        0 => pool(d, dev),
        rc => Err(rc),
    });
    let rc = match ready {
        Some(Ok(p)) => {
            // SAFETY: valid out-pointer, pool and the caller's stream.
            unsafe { (d.alloc_from_pool)(&mut ptr, size, p, stream) }
        }
        Some(Err(rc)) => rc,
        None => ERROR_NOT_INITIALIZED,
    };
    call.allocated(rc, || ptr, || size as u64, |_| dev as u32, stream as u64);
    if rc == 0 {
        ptr as *mut c_void
    } else {
        std::ptr::null_mut()
    }
}

with_caller!(
    /// `void free(void* ptr, size_t size, int device, cudaStream_t stream)`.
    /// PyTorch passes the stream the block was allocated on.
    ///
    /// # Safety
    /// `stream` is a live stream; `ptr` is anything (unknown pointers stop here).
    kvscope_free(ptr: *mut c_void, size: usize, device: c_int, stream: Stream) -> () => free
);

/// `kvscope_free`, called from `caller`.
unsafe extern "C" fn free(
    ptr: *mut c_void,
    size: usize,
    _device: c_int,
    stream: Stream,
    caller: u64,
) {
    if ptr.is_null() {
        return;
    }
    let call = call(Api::KvscopeFree, caller);
    let address = ptr as u64;
    // Not recording (shim off, or a fork's child): the table cannot vouch
    // for the pointer, so it goes to the driver as it would without kvscope.
    let mut taken = Entry::default();
    let entry = match call.recording() {
        Some(s) => match call.free_begin(address, &mut taken) {
            true => {
                if taken.size() != size as u64 {
                    s.anomalies.size_mismatched_frees.fetch_add(1, Relaxed);
                }
                Some(&taken)
            }
            false => {
                // Never ours, or freed already: handing it to the driver
                // would corrupt the pool, so it stops here.
                call.unknown_free(address);
                return;
            }
        },
        None => None,
    };
    let Some(d) = driver() else { return };
    wait_for_other_streams(d, address, stream);
    // SAFETY: a pointer this allocator handed out, on its allocation stream.
    let rc = unsafe { (d.free_async)(address, stream) };
    call.free_end(address, entry, rc);
}

/// `void init(int device_count)`: nothing to do before the first allocation.
#[unsafe(no_mangle)]
pub extern "C" fn kvscope_init(device_count: c_int) {
    let _ = device_count;
    if let Some(s) = lifecycle::get() {
        s.track.note_mode(MODE_PLUGGABLE);
    }
}

/// `void reset()` (torch.cuda.empty_cache): give cached pool memory back.
#[unsafe(no_mangle)]
pub extern "C" fn kvscope_reset() {
    let Some(d) = driver() else { return };
    protect(|| {
        // Frees still queued on streams must land before the pools can let go.
        // SAFETY: synchronises the calling thread's context.
        unsafe { (d.ctx_synchronize)() };
        for p in &POOLS.pools {
            let p = p.load(Acquire);
            if !p.is_null() {
                // SAFETY: a pool this allocator created.
                unsafe { (d.pool_trim_to)(p, 0) };
            }
        }
    });
}

/// `void set_memory_fraction(double fraction, int device)`.
#[unsafe(no_mangle)]
pub extern "C" fn kvscope_memory_fraction(fraction: f64, device: c_int) {
    let (Some(d), Some(dev)) = (driver(), device_index(device)) else {
        return;
    };
    let mut total = 0usize;
    // SAFETY: valid out-pointer.
    if unsafe { (d.total_mem)(&mut total, device) } != 0 || !(0.0..=1.0).contains(&fraction) {
        return;
    }
    POOLS.caps[dev].store((total as f64 * fraction) as u64, Relaxed);
}

/// `void record_stream(void* ptr, cudaStream_t stream)`: the block is used on `stream` too.
///
/// # Safety
/// `stream` stays live until the block is freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kvscope_record_stream(ptr: *mut c_void, stream: Stream) {
    if ptr.is_null() {
        return;
    }
    protect(|| {
        if let Ok(mut m) = POOLS.streams.lock() {
            let v = m
                .get_or_insert_with(HashMap::new)
                .entry(ptr as u64)
                .or_default();
            if v.is_empty() {
                POOLS.recorded.fetch_add(1, Relaxed);
            }
            if !v.contains(&(stream as u64)) {
                v.push(stream as u64);
            }
        }
    });
}
