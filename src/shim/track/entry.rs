//! One live allocation as the table keeps it: 48 bytes, its fields packed
//! (size, entry point and device in one word; sequence and thread in another).

use crate::report::{Api, Space};

/// The space of each entry point by its number (an entry keeps the number).
const SPACES: [Space; 256] = {
    let mut t = [Space::Device; 256];
    let mut i = 0;
    while i < Api::ALL.len() {
        t[i] = Api::ALL[i].space();
        i += 1;
    }
    t
};

/// One live allocation: 48 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Entry {
    pub address: u64,
    /// size:48 | api:8 | device:8
    size_api_device: u64,
    pub stream: u64,
    pub ticks: u64,
    /// seq:40 | thread:24
    seq_thread: u64,
    /// The return address of the outermost hook that made it (0: unknown).
    pub caller: u64,
}

pub const MAX_SIZE: u64 = (1 << 48) - 1;
const _: () = assert!(
    super::devices::MAX_DEVICES <= 256,
    "an entry keeps 8 bits of device"
);

impl Entry {
    #[allow(clippy::too_many_arguments)] // one per packed field
    pub fn new(
        address: u64,
        size: u64,
        api: Api,
        device: u32,
        stream: u64,
        ticks: u64,
        seq: u64,
        thread: u32,
        caller: u64,
    ) -> Entry {
        Entry {
            address,
            size_api_device: size.min(MAX_SIZE) | (api as u64) << 48 | (device as u64 & 0xff) << 56,
            stream,
            ticks,
            seq_thread: (seq & ((1 << 40) - 1)) | (thread as u64 & 0xff_ffff) << 40,
            caller,
        }
    }
    pub fn size(&self) -> u64 {
        self.size_api_device & MAX_SIZE
    }
    pub fn api(&self) -> Api {
        Api::from_u8((self.size_api_device >> 48) as u8).unwrap_or(Api::CudaMalloc)
    }
    /// The memory space of its entry point (a table lookup: the free path
    /// needs it for the counters' lane).
    #[inline(always)]
    pub fn space(&self) -> Space {
        SPACES[(self.size_api_device >> 48) as u8 as usize]
    }
    pub fn device(&self) -> u32 {
        (self.size_api_device >> 56) as u32
    }
    pub fn seq(&self) -> u64 {
        self.seq_thread & ((1 << 40) - 1)
    }
    pub fn thread(&self) -> u32 {
        (self.seq_thread >> 40) as u32
    }
}
