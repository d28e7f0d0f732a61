//! What the shim knows about devices without asking CUDA on the hot path:
//! which device each context and pool belongs to (learned from the calls
//! that create them), which devices were used, and the figures the sampler
//! read from the driver.

use super::spin::SpinLock;
use std::sync::atomic::{AtomicU64, Ordering::*};

/// Devices kvscope tells apart: the one limit every per-device structure
/// (counter lanes, the set of devices seen, table entries) is sized by.
pub const MAX_DEVICES: usize = 32;
const _: () = assert!(
    MAX_DEVICES <= u64::BITS as usize,
    "Devices::seen is one u64"
);

/// A device ordinal as recorded: ordinals at or above `MAX_DEVICES` are
/// recorded as the last one.
#[inline]
pub fn clamp(device: u32) -> u32 {
    device.min(MAX_DEVICES as u32 - 1)
}

#[derive(Clone, Copy, Debug)]
pub struct PoolInfo {
    pub handle: u64,
    pub device: u32,
    pub default_pool: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceInfo {
    pub total_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    pub sampled_ticks: u64,
}

/// A framework allocator's counters for one device, as the program last
/// reported them (`kvscope_framework_counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameworkCounters {
    pub allocated: u64,
    pub reserved: u64,
    pub ticks: u64,
}

#[derive(Default)]
pub struct Devices {
    contexts: SpinLock<Vec<(u64, u32)>>,
    pools: SpinLock<Vec<PoolInfo>>,
    /// One bit per device (`MAX_DEVICES` of them).
    seen: AtomicU64,
    info: SpinLock<Vec<DeviceInfo>>,
    framework: SpinLock<Vec<Option<FrameworkCounters>>>,
}

impl Devices {
    pub fn set_context(&self, ctx: u64, device: u32) {
        let mut c = self.contexts.lock();
        match c.iter_mut().find(|(k, _)| *k == ctx) {
            Some(e) => e.1 = device,
            None => c.push((ctx, device)),
        }
    }

    pub fn context_device(&self, ctx: u64) -> Option<u32> {
        self.contexts
            .lock()
            .iter()
            .find(|(k, _)| *k == ctx)
            .map(|e| e.1)
    }

    pub fn set_pool(&self, info: PoolInfo) {
        let mut p = self.pools.lock();
        match p.iter_mut().find(|q| q.handle == info.handle) {
            Some(e) => *e = info,
            None => p.push(info),
        }
    }

    pub fn pool_device(&self, handle: u64) -> Option<u32> {
        self.pools
            .lock()
            .iter()
            .find(|q| q.handle == handle)
            .map(|q| q.device)
    }

    pub fn pools(&self) -> Vec<PoolInfo> {
        self.pools.lock().clone()
    }

    /// Marks `device` seen before anything about it is recorded (a row, an
    /// event, a failure): a report reads `seen` after those, so whatever it
    /// shows of a device, it lists the device (the first marking is an
    /// acquire-release exchange: what follows it stays after it).
    #[inline]
    pub fn mark_seen(&self, device: u32) {
        let bit = 1u64 << clamp(device);
        if self.seen.load(Relaxed) & bit == 0 {
            self.seen.fetch_or(bit, AcqRel);
        }
    }

    /// Devices that had allocation activity, ascending.
    pub fn seen(&self) -> Vec<u32> {
        let s = self.seen.load(Relaxed);
        (0..MAX_DEVICES as u32)
            .filter(|d| s & (1 << d) != 0)
            .collect()
    }

    pub fn set_info(&self, device: u32, info: DeviceInfo) {
        let mut v = self.info.lock();
        let i = device as usize;
        if v.len() <= i {
            v.resize(i + 1, DeviceInfo::default());
        }
        v[i] = info;
    }

    pub fn set_framework(&self, device: u32, c: FrameworkCounters) {
        let mut v = self.framework.lock();
        let i = clamp(device) as usize;
        if v.len() <= i {
            v.resize(i + 1, None);
        }
        v[i] = Some(c);
    }

    pub fn framework(&self, device: u32) -> Option<FrameworkCounters> {
        self.framework
            .lock()
            .get(device as usize)
            .copied()
            .flatten()
    }

    pub fn info(&self, device: u32) -> DeviceInfo {
        self.info
            .lock()
            .get(device as usize)
            .copied()
            .unwrap_or_default()
    }
}
