//! The CUDA entry points kvscope records, by their exported symbol names.

use serde::{Deserialize, Serialize};

/// Where an allocation lives. Device memory includes VMM physical handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    Device,
    Managed,
    Host,
}

macro_rules! apis {
    ($($variant:ident = $name:literal : $space:ident),* $(,)?) => {
        /// An allocation or free entry point. Serialised as its symbol name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum Api {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl Api {
            pub const ALL: &'static [Api] = &[$(Api::$variant,)*];

            pub const fn name(self) -> &'static str {
                match self { $(Api::$variant => $name,)* }
            }

            /// The memory space an allocation made through this entry point occupies.
            pub const fn space(self) -> Space {
                match self { $(Api::$variant => Space::$space,)* }
            }

            pub fn from_u8(v: u8) -> Option<Api> {
                Api::ALL.get(v as usize).copied()
            }

            pub fn from_name(s: &str) -> Option<Api> {
                Api::ALL.iter().copied().find(|a| a.name() == s)
            }
        }
    };
}

apis! {
    CudaMalloc = "cudaMalloc": Device,
    CudaFree = "cudaFree": Device,
    CudaMallocAsync = "cudaMallocAsync": Device,
    CudaMallocAsyncPtsz = "cudaMallocAsync_ptsz": Device,
    CudaFreeAsync = "cudaFreeAsync": Device,
    CudaFreeAsyncPtsz = "cudaFreeAsync_ptsz": Device,
    CudaMallocFromPoolAsync = "cudaMallocFromPoolAsync": Device,
    CudaMallocFromPoolAsyncPtsz = "cudaMallocFromPoolAsync_ptsz": Device,
    CudaMallocManaged = "cudaMallocManaged": Managed,
    CudaMallocPitch = "cudaMallocPitch": Device,
    CudaMallocHost = "cudaMallocHost": Host,
    CudaHostAlloc = "cudaHostAlloc": Host,
    CudaFreeHost = "cudaFreeHost": Host,
    CuMemAlloc = "cuMemAlloc_v2": Device,
    CuMemFree = "cuMemFree_v2": Device,
    CuMemAllocManaged = "cuMemAllocManaged": Managed,
    CuMemAllocPitch = "cuMemAllocPitch_v2": Device,
    CuMemAllocHost = "cuMemAllocHost_v2": Host,
    CuMemHostAlloc = "cuMemHostAlloc": Host,
    CuMemFreeHost = "cuMemFreeHost": Host,
    CuMemAllocAsync = "cuMemAllocAsync": Device,
    CuMemAllocAsyncPtsz = "cuMemAllocAsync_ptsz": Device,
    CuMemFreeAsync = "cuMemFreeAsync": Device,
    CuMemFreeAsyncPtsz = "cuMemFreeAsync_ptsz": Device,
    CuMemAllocFromPoolAsync = "cuMemAllocFromPoolAsync": Device,
    CuMemAllocFromPoolAsyncPtsz = "cuMemAllocFromPoolAsync_ptsz": Device,
    CuMemAddressReserve = "cuMemAddressReserve": Device,
    CuMemAddressFree = "cuMemAddressFree": Device,
    CuMemCreate = "cuMemCreate": Device,
    CuMemRelease = "cuMemRelease": Device,
    CuMemMap = "cuMemMap": Device,
    CuMemUnmap = "cuMemUnmap": Device,
    KvscopeMalloc = "kvscope_malloc": Device,
    KvscopeFree = "kvscope_free": Device,
}

impl Api {
    /// Entry points that allocate (as opposed to free, reserve or map).
    pub const fn allocates(self) -> bool {
        matches!(
            self,
            Api::CudaMalloc
                | Api::CudaMallocAsync
                | Api::CudaMallocAsyncPtsz
                | Api::CudaMallocFromPoolAsync
                | Api::CudaMallocFromPoolAsyncPtsz
                | Api::CudaMallocManaged
                | Api::CudaMallocPitch
                | Api::CudaMallocHost
                | Api::CudaHostAlloc
                | Api::CuMemAlloc
                | Api::CuMemAllocManaged
                | Api::CuMemAllocPitch
                | Api::CuMemAllocHost
                | Api::CuMemHostAlloc
                | Api::CuMemAllocAsync
                | Api::CuMemAllocAsyncPtsz
                | Api::CuMemAllocFromPoolAsync
                | Api::CuMemAllocFromPoolAsyncPtsz
                | Api::CuMemCreate
                | Api::KvscopeMalloc
        )
    }

    /// kvscope's own allocator (PyTorch's pluggable allocator interface).
    pub const fn pluggable(self) -> bool {
        matches!(self, Api::KvscopeMalloc | Api::KvscopeFree)
    }

    /// Stream-ordered pool allocations (their memory is pool memory, kept reserved when freed).
    pub const fn pooled(self) -> bool {
        matches!(
            self,
            Api::CudaMallocAsync
                | Api::CudaMallocAsyncPtsz
                | Api::CudaMallocFromPoolAsync
                | Api::CudaMallocFromPoolAsyncPtsz
                | Api::CuMemAllocAsync
                | Api::CuMemAllocAsyncPtsz
                | Api::CuMemAllocFromPoolAsync
                | Api::CuMemAllocFromPoolAsyncPtsz
                | Api::KvscopeMalloc
        )
    }
}

/// The name of a CUDA error code (runtime and driver share the values kvscope sees most).
pub fn error_name(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "invalid_value",
        2 => "out_of_memory",
        3 => "not_initialized",
        4 => "deinitialized",
        34 => "stub_library",
        35 => "insufficient_driver",
        100 => "no_device",
        101 => "invalid_device",
        201 => "invalid_context",
        302 => "symbol_not_found",
        400 => "invalid_handle",
        500 => "not_found",
        800 => "not_permitted",
        801 => "not_supported",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_u8_and_serde() {
        for (i, a) in Api::ALL.iter().enumerate() {
            assert_eq!(Api::from_u8(i as u8), Some(*a));
            assert_eq!(Api::from_name(a.name()), Some(*a));
            let json = serde_json::to_string(a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.name()));
        }
    }
}
