//! Questions the shim asks the driver, never from a hook on the hot path:
//! from the sampler thread (free/total memory, pool attributes) and once
//! after the first out-of-memory failure. Only a libcuda already loaded by
//! the program is used, through its real functions (not the hooks).

use super::real::{self, Lib};
use std::ffi::{c_int, c_uint, c_void};
use std::sync::OnceLock;

type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;
type TotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
type CtxGetState = unsafe extern "C" fn(c_int, *mut c_uint, *mut c_int) -> c_int;
type CtxRetain = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_int;
type CtxRelease = unsafe extern "C" fn(c_int) -> c_int;
type CtxSetCurrent = unsafe extern "C" fn(*mut c_void) -> c_int;
type PoolGetAttribute = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int;

struct Driver {
    mem_get_info: MemGetInfo,
    total_mem: TotalMem,
    ctx_get_state: CtxGetState,
    ctx_retain: CtxRetain,
    ctx_release: CtxRelease,
    ctx_set_current: CtxSetCurrent,
    pool_get_attribute: PoolGetAttribute,
}

static DRIVER: OnceLock<Option<Driver>> = OnceLock::new();

fn driver() -> Option<&'static Driver> {
    DRIVER
        .get_or_init(|| {
            // A libcuda the program already loaded; the handle stays open.
            let h = *real::loaded(Lib::Driver).first()?;
            // SAFETY: h stays open for the life of the process; each symbol
            // has the documented CUDA driver signature.
            unsafe {
                Some(Driver {
                    mem_get_info: real::function(h, c"cuMemGetInfo_v2")?,
                    total_mem: real::function(h, c"cuDeviceTotalMem_v2")?,
                    ctx_get_state: real::function(h, c"cuDevicePrimaryCtxGetState")?,
                    ctx_retain: real::function(h, c"cuDevicePrimaryCtxRetain")?,
                    ctx_release: real::function(h, c"cuDevicePrimaryCtxRelease_v2")?,
                    ctx_set_current: real::function(h, c"cuCtxSetCurrent")?,
                    pool_get_attribute: real::function(h, c"cuMemPoolGetAttribute")?,
                })
            }
        })
        .as_ref()
}

/// Free and total memory of the calling thread's current device.
pub fn mem_info_current() -> Option<(u64, u64)> {
    let d = driver()?;
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: valid out-pointers.
    (unsafe { (d.mem_get_info)(&mut free, &mut total) } == 0).then_some((free as u64, total as u64))
}

pub fn total_mem(device: u32) -> Option<u64> {
    let d = driver()?;
    let mut total = 0usize;
    // SAFETY: valid out-pointer.
    (unsafe { (d.total_mem)(&mut total, device as c_int) } == 0).then_some(total as u64)
}

/// Free and total memory of a device, asked from the sampler thread. Only
/// when the program already holds the device's primary context: the shim
/// never creates one (a context costs hundreds of MiB).
pub fn mem_info(device: u32) -> Option<(u64, u64)> {
    let d = driver()?;
    let (mut flags, mut active) = (0u32, 0 as c_int);
    // SAFETY: valid out-pointers.
    if unsafe { (d.ctx_get_state)(device as c_int, &mut flags, &mut active) } != 0 || active == 0 {
        return None;
    }
    let mut ctx = std::ptr::null_mut();
    // SAFETY: valid out-pointer; balanced by the release below.
    if unsafe { (d.ctx_retain)(&mut ctx, device as c_int) } != 0 {
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
    unsafe { (d.ctx_release)(device as c_int) };
    info
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PoolAttrs {
    pub release_threshold: u64,
    pub reserved: u64,
    pub reserved_high: u64,
    pub used: u64,
    pub used_high: u64,
}

pub fn pool_attrs(handle: u64) -> Option<PoolAttrs> {
    let d = driver()?;
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
        release_threshold: get(4)?,
        reserved: get(5)?,
        reserved_high: get(6)?,
        used: get(7)?,
        used_high: get(8)?,
    })
}
