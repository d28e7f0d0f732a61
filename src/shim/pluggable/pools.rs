//! The pluggable allocator's pools: one stream-ordered pool per device,
//! made on first use with a release threshold of UINT64_MAX (freed memory
//! stays cached, as in PyTorch's cudaMallocAsync backend), per-device caps
//! (set_memory_fraction), and the streams each block was also used on
//! (record_stream).

use crate::shim::cuda::driver::Driver;
use crate::shim::cuda::{pool_attr, PoolProps, ERROR_NOT_INITIALIZED, EVENT_DISABLE_TIMING};
use crate::shim::lifecycle;
use crate::shim::track::devices::{PoolInfo, MAX_DEVICES};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

type Stream = *mut c_void;

pub struct Pools {
    pub pools: [AtomicPtr<c_void>; MAX_DEVICES],
    /// Bytes a device may hold (set_memory_fraction); u64::MAX: no cap.
    pub caps: [AtomicU64; MAX_DEVICES],
    /// Streams a block was used on besides its own (record_stream), and how
    /// many blocks have any, so that frees skip the lock when none do.
    pub streams: Mutex<Option<HashMap<u64, Vec<u64>>>>,
    pub recorded: AtomicUsize,
    create: Mutex<()>,
}

pub static POOLS: Pools = Pools {
    pools: [const { AtomicPtr::new(std::ptr::null_mut()) }; MAX_DEVICES],
    caps: [const { AtomicU64::new(u64::MAX) }; MAX_DEVICES],
    streams: Mutex::new(None),
    recorded: AtomicUsize::new(0),
    create: Mutex::new(()),
};

/// A current context on this thread for `device`, the primary one if none.
pub fn ensure_context(d: &Driver, device: c_int) -> i32 {
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
pub fn pool(d: &Driver, device: usize) -> Result<*mut c_void, i32> {
    let p = POOLS.pools[device].load(Acquire);
    if !p.is_null() {
        return Ok(p);
    }
    let _g = POOLS.create.lock().map_err(|_| ERROR_NOT_INITIALIZED)?;
    let p = POOLS.pools[device].load(Acquire);
    if !p.is_null() {
        return Ok(p);
    }
    let props = PoolProps::device_pool(device as c_int);
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
            pool_attr::RELEASE_THRESHOLD,
            &mut keep as *mut u64 as *mut c_void,
        )
    };
    POOLS.pools[device].store(pool, Release);
    if let Some(s) = lifecycle::get() {
        s.track.devices.set_pool(PoolInfo {
            handle: pool as u64,
            device: device as u32,
            default_pool: false,
        });
    }
    Ok(pool)
}

/// Streams the block was used on (record_stream) must be done with it before
/// the pool hands it out again: the freeing stream waits for each of them.
pub fn wait_for_other_streams(d: &Driver, address: u64, stream: Stream) {
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
            if (d.event_create)(&mut ev, EVENT_DISABLE_TIMING) == 0 {
                (d.event_record)(ev, other as Stream);
                (d.stream_wait_event)(stream, ev, 0);
                (d.event_destroy)(ev);
            }
        }
    }
}
