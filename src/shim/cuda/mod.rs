//! What the shim knows of CUDA's ABI, in one place: error codes, enum values
//! and the heads of the structs it reads (values from `cuda.h` and
//! `cuda_runtime_api.h`, identical for the runtime and the driver where both
//! have them). `driver` holds the driver functions the shim calls itself.

pub mod driver;
pub mod loader;

use std::ffi::{c_int, c_uint, c_void};

/// `cudaErrorMemoryAllocation` and `CUDA_ERROR_OUT_OF_MEMORY`.
pub const ERROR_OUT_OF_MEMORY: i32 = 2;
/// `CUDA_ERROR_NOT_INITIALIZED`.
pub const ERROR_NOT_INITIALIZED: i32 = 3;
/// `cudaErrorSharedObjectSymbolNotFound` and
/// `CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND`: what a hook returns when no
/// real function exists behind it.
pub const ERROR_SYMBOL_NOT_FOUND: i32 = 302;

/// `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM`: the `_ptsz` variants.
pub const PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM: u64 = 2;
/// The CUDA version `cudaGetDriverEntryPoint` asks for: the runtime's own,
/// which kvscope supports from 12.0.
pub const RUNTIME_VERSION: i32 = 12000;

/// `CU_MEM_LOCATION_TYPE_DEVICE`.
pub const LOCATION_DEVICE: c_int = 1;
/// `CU_MEM_ALLOCATION_TYPE_PINNED`.
pub const ALLOCATION_PINNED: c_int = 1;
/// `CU_EVENT_DISABLE_TIMING`.
pub const EVENT_DISABLE_TIMING: c_uint = 0x2;

/// `CUmempool_attribute` values the shim sets or reads (all 64-bit).
pub mod pool_attr {
    use std::ffi::c_int;
    pub const RELEASE_THRESHOLD: c_int = 4;
    pub const RESERVED_MEM_CURRENT: c_int = 5;
    pub const RESERVED_MEM_HIGH: c_int = 6;
    pub const USED_MEM_CURRENT: c_int = 7;
    pub const USED_MEM_HIGH: c_int = 8;
}

/// The head shared by `CUmemPoolProps` and `CUmemAllocationProp`: the
/// allocation type, the handle types, then `CUmemLocation { type, id }`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PropsHead {
    pub alloc_type: c_int,
    pub handle_types: c_int,
    pub location_type: c_int,
    pub location_id: c_int,
}

impl PropsHead {
    /// The device a pool or a physical allocation is placed on, when the
    /// location is a device.
    ///
    /// # Safety
    /// `props` is null or points to a `CUmemPoolProps` or `CUmemAllocationProp`.
    pub unsafe fn device(props: *const c_void) -> Option<u32> {
        if props.is_null() {
            return None;
        }
        // SAFETY: both structs begin with this head (the caller's contract).
        let head = unsafe { &*(props as *const PropsHead) };
        (head.location_type == LOCATION_DEVICE && head.location_id >= 0)
            .then_some(head.location_id as u32)
    }
}

/// `cudaPitchedPtr`: what `cudaMalloc3D` fills (the pointer first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PitchedPtr {
    pub ptr: u64,
    pub pitch: usize,
    pub xsize: usize,
    pub ysize: usize,
}

/// `cudaExtent`: width in bytes, height and depth in rows (by value).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Extent {
    pub width: usize,
    pub height: usize,
    pub depth: usize,
}

/// `CUmemPoolProps` (CUDA 12: 88 bytes), as the pluggable allocator makes it.
#[repr(C)]
pub struct PoolProps {
    pub head: PropsHead,
    pub win32_security_attributes: *mut c_void,
    pub max_size: usize,
    pub usage: u16,
    pub reserved: [u8; 54],
}

const _: () = assert!(std::mem::size_of::<PoolProps>() == 88);

impl PoolProps {
    /// A pool of pinned device memory on `device`.
    pub fn device_pool(device: c_int) -> PoolProps {
        PoolProps {
            head: PropsHead {
                alloc_type: ALLOCATION_PINNED,
                handle_types: 0,
                location_type: LOCATION_DEVICE,
                location_id: device,
            },
            win32_security_attributes: std::ptr::null_mut(),
            max_size: 0,
            usage: 0,
            reserved: [0; 54],
        }
    }
}
