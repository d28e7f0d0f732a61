//! The driver functions the shim calls itself, never from a hook on the hot
//! path: from the background thread (free/total memory, pool attributes),
//! once on the failing thread of the first out-of-memory failure, and for
//! the pluggable allocator's own pools. They come from the libcuda the
//! process loaded, through its real functions (never the hooks): a process
//! has one driver, and loading a runtime beside the program's would bring a
//! second one.

use super::loader as real;
use super::{pool_attr, PoolProps};
use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, Ordering::*};
use std::sync::{Once, OnceLock};

type Stream = *mut c_void;

/// Every driver function kvscope calls, with its documented signature.
#[allow(clippy::type_complexity)]
pub struct Driver {
    pub init: unsafe extern "C" fn(c_uint) -> c_int,
    pub mem_get_info: unsafe extern "C" fn(*mut usize, *mut usize) -> c_int,
    pub total_mem: unsafe extern "C" fn(*mut usize, c_int) -> c_int,
    pub primary_ctx_get_state: unsafe extern "C" fn(c_int, *mut c_uint, *mut c_int) -> c_int,
    pub primary_ctx_retain: unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int,
    pub primary_ctx_release: unsafe extern "C" fn(c_int) -> c_int,
    pub ctx_get_current: unsafe extern "C" fn(*mut *mut c_void) -> c_int,
    pub ctx_set_current: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub ctx_synchronize: unsafe extern "C" fn() -> c_int,
    pub alloc_from_pool: unsafe extern "C" fn(*mut u64, usize, *mut c_void, Stream) -> c_int,
    pub free_async: unsafe extern "C" fn(u64, Stream) -> c_int,
    pub pool_create: unsafe extern "C" fn(*mut *mut c_void, *const PoolProps) -> c_int,
    pub pool_get_attribute: unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int,
    pub pool_set_attribute: unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int,
    pub pool_trim_to: unsafe extern "C" fn(*mut c_void, usize) -> c_int,
    pub event_create: unsafe extern "C" fn(*mut *mut c_void, c_uint) -> c_int,
    pub event_record: unsafe extern "C" fn(*mut c_void, Stream) -> c_int,
    pub event_destroy: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub stream_wait_event: unsafe extern "C" fn(Stream, *mut c_void, c_uint) -> c_int,
}

static DRIVER: OnceLock<Driver> = OnceLock::new();

/// The driver functions of a libcuda handle, when it has them all.
///
/// # Safety
/// `h` is a handle from dlopen that stays open for the life of the process.
unsafe fn resolve(h: *mut c_void) -> Option<Driver> {
    // SAFETY: h stays open (the caller's contract); each symbol has the
    // documented CUDA driver signature.
    unsafe {
        Some(Driver {
            init: real::function(h, c"cuInit")?,
            mem_get_info: real::function(h, c"cuMemGetInfo_v2")?,
            total_mem: real::function(h, c"cuDeviceTotalMem_v2")?,
            primary_ctx_get_state: real::function(h, c"cuDevicePrimaryCtxGetState")?,
            primary_ctx_retain: real::function(h, c"cuDevicePrimaryCtxRetain")?,
            primary_ctx_release: real::function(h, c"cuDevicePrimaryCtxRelease_v2")?,
            ctx_get_current: real::function(h, c"cuCtxGetCurrent")?,
            ctx_set_current: real::function(h, c"cuCtxSetCurrent")?,
            ctx_synchronize: real::function(h, c"cuCtxSynchronize")?,
            alloc_from_pool: real::function(h, c"cuMemAllocFromPoolAsync")?,
            free_async: real::function(h, c"cuMemFreeAsync")?,
            pool_create: real::function(h, c"cuMemPoolCreate")?,
            pool_get_attribute: real::function(h, c"cuMemPoolGetAttribute")?,
            pool_set_attribute: real::function(h, c"cuMemPoolSetAttribute")?,
            pool_trim_to: real::function(h, c"cuMemPoolTrimTo")?,
            event_create: real::function(h, c"cuEventCreate")?,
            event_record: real::function(h, c"cuEventRecord")?,
            event_destroy: real::function(h, c"cuEventDestroy_v2")?,
            stream_wait_event: real::function(h, c"cuStreamWaitEvent")?,
        })
    }
}

/// The driver, when the program has loaded libcuda; never loads it (asked
/// again later while it is not loaded yet).
pub fn loaded() -> Option<&'static Driver> {
    if let Some(d) = DRIVER.get() {
        return Some(d);
    }
    let h = *real::loaded(real::Lib::Driver).first()?;
    // SAFETY: a NOLOAD handle that is never closed.
    let d = unsafe { resolve(h) }?;
    Some(DRIVER.get_or_init(|| d))
}

/// The driver once `load` has loaded and initialised it: one load, for the
/// pluggable allocator's every call.
static READY: AtomicPtr<Driver> = AtomicPtr::new(std::ptr::null_mut());

/// The driver if `load` has succeeded before (no lock, no call).
#[inline]
pub fn ready() -> Option<&'static Driver> {
    let p = READY.load(Acquire);
    // SAFETY: set once from DRIVER's value, which lives as long as the process.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The driver, loading libcuda by its soname when the program has not, and
/// initialised (the pluggable allocator may be the first to use CUDA).
pub fn load() -> Option<&'static Driver> {
    static INIT: Once = Once::new();
    let d = loaded().or_else(|| {
        // SAFETY: loading the driver library by its soname; never closed.
        let h =
            unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if h.is_null() {
            return None;
        }
        // SAFETY: h stays open for the life of the process.
        let d = unsafe { resolve(h) }?;
        Some(DRIVER.get_or_init(|| d))
    })?;
    // SAFETY: cuInit has no preconditions; repeated calls are harmless.
    INIT.call_once(|| unsafe {
        (d.init)(0);
    });
    READY.store(d as *const Driver as *mut Driver, Release);
    Some(d)
}

/// Free and total memory of the calling thread's current device.
pub fn mem_info_current() -> Option<(u64, u64)> {
    let d = loaded()?;
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: valid out-pointers.
    (unsafe { (d.mem_get_info)(&mut free, &mut total) } == 0).then_some((free as u64, total as u64))
}

pub fn total_mem(device: u32) -> Option<u64> {
    let d = loaded()?;
    let mut total = 0usize;
    // SAFETY: valid out-pointer.
    (unsafe { (d.total_mem)(&mut total, device as c_int) } == 0).then_some(total as u64)
}

/// Free and total memory of a device, asked from the shim's own thread.
/// Only when the program already holds the device's primary context: the
/// shim never creates one (a context costs hundreds of MiB).
pub fn mem_info(device: u32) -> Option<(u64, u64)> {
    let d = loaded()?;
    let (mut flags, mut active) = (0u32, 0 as c_int);
    // SAFETY: valid out-pointers.
    if unsafe { (d.primary_ctx_get_state)(device as c_int, &mut flags, &mut active) } != 0
        || active == 0
    {
        return None;
    }
    let mut ctx = std::ptr::null_mut();
    // SAFETY: valid out-pointer; balanced by the release below.
    if unsafe { (d.primary_ctx_retain)(&mut ctx, device as c_int) } != 0 {
        return None;
    }
    // SAFETY: ctx was just retained; this thread is the shim's own.
    let info = unsafe {
        if (d.ctx_set_current)(ctx) == 0 {
            let r = mem_info_current();
            (d.ctx_set_current)(std::ptr::null_mut());
            r
        } else {
            None
        }
    };
    // SAFETY: balances the retain above.
    unsafe { (d.primary_ctx_release)(device as c_int) };
    info
}

/// A stream-ordered pool's figures (`cuMemPoolGetAttribute`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolAttrs {
    pub release_threshold: u64,
    pub reserved: u64,
    pub reserved_high: u64,
    pub used: u64,
    pub used_high: u64,
}

/// Pool attributes need no context: safe from any thread.
pub fn pool_attrs(handle: u64) -> Option<PoolAttrs> {
    let d = loaded()?;
    let get = |attr: c_int| {
        let mut v = 0u64;
        // SAFETY: these attributes are 64-bit values.
        (unsafe {
            (d.pool_get_attribute)(
                handle as *mut c_void,
                attr,
                &mut v as *mut u64 as *mut c_void,
            )
        } == 0)
            .then_some(v)
    };
    Some(PoolAttrs {
        release_threshold: get(pool_attr::RELEASE_THRESHOLD)?,
        reserved: get(pool_attr::RESERVED_MEM_CURRENT)?,
        reserved_high: get(pool_attr::RESERVED_MEM_HIGH)?,
        used: get(pool_attr::USED_MEM_CURRENT)?,
        used_high: get(pool_attr::USED_MEM_HIGH)?,
    })
}

/// `cuDeviceGetUuid_v2` (CUDA 11.4+) or `cuDeviceGetUuid` (9.2+):
/// `CUresult (CUuuid *uuid, CUdevice dev)`, 16 bytes. Kept apart from
/// `Driver`: an older driver without it still gives the rest.
type UuidFn = unsafe extern "C" fn(*mut [u8; 16], c_int) -> c_int;

/// The UUID of a device (ordinal as `cuDeviceGet` returns it), when the
/// program's driver has the function. No context needed.
pub fn uuid(device: u32) -> Option<[u8; 16]> {
    static UUID: OnceLock<Option<UuidFn>> = OnceLock::new();
    loaded()?;
    let f = UUID.get_or_init(|| {
        let h = *real::loaded(real::Lib::Driver).first()?;
        // SAFETY: a NOLOAD handle that is never closed; both symbols have
        // the signature of UuidFn.
        unsafe {
            real::function::<UuidFn>(h, c"cuDeviceGetUuid_v2")
                .or_else(|| real::function::<UuidFn>(h, c"cuDeviceGetUuid"))
        }
    });
    let f = (*f)?;
    let mut out = [0u8; 16];
    // SAFETY: a valid 16-byte out-buffer (CUuuid is `char bytes[16]`).
    (unsafe { f(&mut out, device as c_int) } == 0).then_some(out)
}
