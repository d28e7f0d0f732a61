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

use super::real::{self, Lib};
use super::record::{protect, Call};
use super::state::{self, MODE_PLUGGABLE};
use super::{counters, devices::PoolInfo};
use crate::report::{Api, Space};
use std::collections::HashMap;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Mutex, OnceLock};

type Stream = *mut c_void;
const MAX_DEVICES: usize = counters::MAX_DEVICES;

#[allow(clippy::type_complexity)]
struct Driver {
    alloc_from_pool: unsafe extern "C" fn(*mut u64, usize, *mut c_void, Stream) -> c_int,
    free_async: unsafe extern "C" fn(u64, Stream) -> c_int,
    pool_create: unsafe extern "C" fn(*mut *mut c_void, *const PoolProps) -> c_int,
    pool_set_attribute: unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int,
    pool_trim_to: unsafe extern "C" fn(*mut c_void, usize) -> c_int,
    ctx_get_current: unsafe extern "C" fn(*mut *mut c_void) -> c_int,
    ctx_set_current: unsafe extern "C" fn(*mut c_void) -> c_int,
    ctx_synchronize: unsafe extern "C" fn() -> c_int,
    primary_ctx_retain: unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int,
    total_mem: unsafe extern "C" fn(*mut usize, c_int) -> c_int,
    init: unsafe extern "C" fn(c_uint) -> c_int,
    event_create: unsafe extern "C" fn(*mut *mut c_void, c_uint) -> c_int,
    event_record: unsafe extern "C" fn(*mut c_void, Stream) -> c_int,
    event_destroy: unsafe extern "C" fn(*mut c_void) -> c_int,
    stream_wait_event: unsafe extern "C" fn(Stream, *mut c_void, c_uint) -> c_int,
}

/// CUmemPoolProps (CUDA 12: 88 bytes).
#[repr(C)]
struct PoolProps {
    alloc_type: c_int,
    handle_types: c_int,
    location_type: c_int,
    location_id: c_int,
    win32_security_attributes: *mut c_void,
    max_size: usize,
    usage: u16,
    reserved: [u8; 54],
}

const CU_MEM_ALLOCATION_TYPE_PINNED: c_int = 1;
const CU_MEM_LOCATION_TYPE_DEVICE: c_int = 1;
const CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: c_int = 4;
const CU_EVENT_DISABLE_TIMING: c_uint = 0x2;
const CUDA_ERROR_OUT_OF_MEMORY: i32 = 2;
const CUDA_ERROR_NOT_INITIALIZED: i32 = 3;

fn driver() -> Option<&'static Driver> {
    static DRIVER: OnceLock<Option<Driver>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let handle = real::loaded(Lib::Driver).into_iter().next().or_else(|| {
                // SAFETY: loading the driver library by its soname.
                let h = unsafe {
                    libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL)
                };
                (!h.is_null()).then_some(h)
            })?;
            // SAFETY: the handle stays open for the life of the process; each
            // symbol has the documented CUDA driver signature.
            unsafe {
                let d = Driver {
                    alloc_from_pool: real::function(handle, c"cuMemAllocFromPoolAsync")?,
                    free_async: real::function(handle, c"cuMemFreeAsync")?,
                    pool_create: real::function(handle, c"cuMemPoolCreate")?,
                    pool_set_attribute: real::function(handle, c"cuMemPoolSetAttribute")?,
                    pool_trim_to: real::function(handle, c"cuMemPoolTrimTo")?,
                    ctx_get_current: real::function(handle, c"cuCtxGetCurrent")?,
                    ctx_set_current: real::function(handle, c"cuCtxSetCurrent")?,
                    ctx_synchronize: real::function(handle, c"cuCtxSynchronize")?,
                    primary_ctx_retain: real::function(handle, c"cuDevicePrimaryCtxRetain")?,
                    total_mem: real::function(handle, c"cuDeviceTotalMem_v2")?,
                    init: real::function(handle, c"cuInit")?,
                    event_create: real::function(handle, c"cuEventCreate")?,
                    event_record: real::function(handle, c"cuEventRecord")?,
                    event_destroy: real::function(handle, c"cuEventDestroy_v2")?,
                    stream_wait_event: real::function(handle, c"cuStreamWaitEvent")?,
                };
                (d.init)(0);
                Some(d)
            }
        })
        .as_ref()
}

struct Pools {
    pools: [AtomicPtr<c_void>; MAX_DEVICES],
    /// Bytes a device may hold (set_memory_fraction); u64::MAX: no cap.
    caps: [AtomicU64; MAX_DEVICES],
    /// Streams a block was used on besides its own (record_stream), and how
    /// many blocks have any, so that frees skip the lock when none do.
    streams: Mutex<Option<HashMap<u64, Vec<u64>>>>,
    recorded: AtomicUsize,
    create: Mutex<()>,
}

static POOLS: Pools = Pools {
    pools: [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_DEVICES],
    caps: [const { AtomicU64::new(u64::MAX) }; MAX_DEVICES],
    streams: Mutex::new(None),
    recorded: AtomicUsize::new(0),
    create: Mutex::new(()),
};

/// A current context on this thread for `device`, the primary one if none.
fn ensure_context(d: &Driver, device: c_int) -> i32 {
    let mut ctx = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    if unsafe { (d.ctx_get_current)(&mut ctx) } == 0 && !ctx.is_null() {
        return 0;
    }
    // SAFETY: valid out-pointer; the context is the device's primary one.
    unsafe {
        let rc = (d.primary_ctx_retain)(&mut ctx, device);
        if rc != 0 {
            return rc;
        }
        (d.ctx_set_current)(ctx)
    }
}

/// The device's pool, made on first use.
fn pool(d: &Driver, device: usize) -> Result<*mut c_void, i32> {
    let p = POOLS.pools[device].load(Acquire);
    if !p.is_null() {
        return Ok(p);
    }
    let _g = POOLS
        .create
        .lock()
        .map_err(|_| CUDA_ERROR_NOT_INITIALIZED)?;
    let p = POOLS.pools[device].load(Acquire);
    if !p.is_null() {
        return Ok(p);
    }
    let props = PoolProps {
        alloc_type: CU_MEM_ALLOCATION_TYPE_PINNED,
        handle_types: 0,
        location_type: CU_MEM_LOCATION_TYPE_DEVICE,
        location_id: device as c_int,
        win32_security_attributes: std::ptr::null_mut(),
        max_size: 0,
        usage: 0,
        reserved: [0; 54],
    };
    let mut pool = std::ptr::null_mut();
    // SAFETY: valid props and out-pointer.
    let rc = unsafe { (d.pool_create)(&mut pool, &props) };
    if rc != 0 {
        return Err(rc);
    }
    let mut keep = u64::MAX;
    // SAFETY: the release threshold is a 64-bit value.
    unsafe {
        (d.pool_set_attribute)(
            pool,
            CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            &mut keep as *mut u64 as *mut c_void,
        )
    };
    POOLS.pools[device].store(pool, Release);
    if let Some(s) = state::get() {
        s.devices.set_pool(PoolInfo {
            handle: pool as u64,
            device: device as u32,
            default_pool: false,
        });
    }
    Ok(pool)
}

fn device_index(device: c_int) -> Option<usize> {
    (0..MAX_DEVICES as c_int)
        .contains(&device)
        .then_some(device as usize)
}

/// `void* alloc(size_t size, int device, cudaStream_t stream)`.
///
/// # Safety
/// `stream` is a live stream of `device`, or a default-stream handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kvscope_malloc(size: usize, device: c_int, stream: Stream) -> *mut c_void {
    let call = Call::begin(Api::KvscopeMalloc);
    let (Some(d), Some(dev)) = (driver(), device_index(device)) else {
        call.allocated(
            CUDA_ERROR_NOT_INITIALIZED,
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
    if cap != u64::MAX
        && counters::fold(counters::lane(Space::Device, dev as u32)).live_bytes() + size as u64
            > cap
    {
        call.allocated(
            CUDA_ERROR_OUT_OF_MEMORY,
            || 0,
            || size as u64,
            |_| dev as u32,
            stream as u64,
        );
        return std::ptr::null_mut();
    }
    let mut ptr = 0u64;
    let rc = match ensure_context(d, device) {
        0 => match pool(d, dev) {
            // SAFETY: valid out-pointer, pool and the caller's stream.
            Ok(p) => unsafe { (d.alloc_from_pool)(&mut ptr, size, p, stream) },
            Err(rc) => rc,
        },
        rc => rc,
    };
    call.allocated(rc, || ptr, || size as u64, |_| dev as u32, stream as u64);
    if rc == 0 {
        ptr as *mut c_void
    } else {
        std::ptr::null_mut()
    }
}

/// `void free(void* ptr, size_t size, int device, cudaStream_t stream)`.
/// PyTorch passes the stream the block was allocated on.
///
/// # Safety
/// `stream` is a live stream; `ptr` is anything (unknown pointers stop here).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kvscope_free(
    ptr: *mut c_void,
    size: usize,
    _device: c_int,
    stream: Stream,
) {
    if ptr.is_null() {
        return;
    }
    let call = Call::begin(Api::KvscopeFree);
    let address = ptr as u64;
    // Not recording (shim off, or a fork's child): the table cannot vouch
    // for the pointer, so it goes to the driver as it would without kvscope.
    let entry = match call.recording() {
        Some(s) => match call.free_begin(address) {
            Some(e) => {
                if e.size() != size as u64 {
                    s.anomalies.size_mismatched_frees.fetch_add(1, Relaxed);
                }
                Some(e)
            }
            None => {
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

/// Streams the block was used on (record_stream) must be done with it before
/// the pool hands it out again: the freeing stream waits for each of them.
fn wait_for_other_streams(d: &Driver, address: u64, stream: Stream) {
    if POOLS.recorded.load(Relaxed) == 0 {
        return;
    }
    let others = POOLS
        .streams
        .lock()
        .ok()
        .and_then(|mut m| m.as_mut()?.remove(&address))
        .unwrap_or_default();
    if !others.is_empty() {
        POOLS.recorded.fetch_sub(1, Relaxed);
    }
    for other in others {
        let mut ev = std::ptr::null_mut();
        // SAFETY: an event recorded on the other stream, waited for on the freeing one.
        unsafe {
            if (d.event_create)(&mut ev, CU_EVENT_DISABLE_TIMING) == 0 {
                (d.event_record)(ev, other as Stream);
                (d.stream_wait_event)(stream, ev, 0);
                (d.event_destroy)(ev);
            }
        }
    }
}

/// `void init(int device_count)`: nothing to do before the first allocation.
#[unsafe(no_mangle)]
pub extern "C" fn kvscope_init(device_count: c_int) {
    let _ = device_count;
    if let Some(s) = state::get() {
        s.note_mode(MODE_PLUGGABLE);
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
