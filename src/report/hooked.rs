//! Every function the shim interposes or exports, one row each: the single
//! table from which the report's `Api` enum and its flags
//! (`report/api.rs`), the hooks, their real-function slots, the routing rows
//! and the export list (`shim/hooks/table.rs`) are all generated. Adding a
//! hooked function is adding a row here (and its handler, if it is not a
//! plain allocation or free): see docs/architecture.md.
//!
//! `hooked_functions!(m)` calls `m!` with three sections:
//!
//! - `recorded`: entry points that allocate, free, reserve or map memory.
//!   Each is an `Api` (named in reports by its symbol). Columns: the `Api`
//!   variant, the symbol and its C signature, the library that defines it
//!   (`Runtime`: libcudart, `Driver`: libcuda), the memory space, flags
//!   (`ALLOCATES`, `POOLED`: stream-ordered pool memory), and how it is
//!   hooked: `alloc(..)` (the address comes back through `out`), `free(..)`,
//!   or `custom(module)` (the handler `hooks::module::symbol`).
//! - `observed`: hooks that record no memory but tell the shim which device,
//!   context or pool later calls are about, or hand out driver functions
//!   (`cuGetProcAddress`...). Symbol, signature, library, handler module.
//! - `exported`: kvscope's own functions, exported but never routed (the
//!   `dlsym` hook, the C API, the pluggable allocator); the `own` rows among
//!   them are `Api`s too. Symbol and the module that defines it.
//!
//! The order of `recorded` then `own` rows is the order of `Api`.

macro_rules! hooked_functions {
    ($then:ident) => {
        $then! {
        recorded {
            CudaMalloc: cudaMalloc(p: *mut *mut c_void, size: usize)
                Runtime Device [ALLOCATES] => alloc(out = p, size = size, device = |d| d, stream = 0);
            CudaFree: cudaFree(p: *mut c_void) Runtime Device [] => free(address = p);
            CudaMallocAsync: cudaMallocAsync(p: *mut *mut c_void, size: usize, s: Stream)
                Runtime Device [ALLOCATES POOLED] => alloc(out = p, size = size, device = |d| d, stream = s);
            CudaMallocAsyncPtsz: cudaMallocAsync_ptsz(p: *mut *mut c_void, size: usize, s: Stream)
                Runtime Device [ALLOCATES POOLED] => alloc(out = p, size = size, device = |d| d, stream = s);
            CudaFreeAsync: cudaFreeAsync(p: *mut c_void, s: Stream) Runtime Device [] => free(address = p);
            CudaFreeAsyncPtsz: cudaFreeAsync_ptsz(p: *mut c_void, s: Stream) Runtime Device [] => free(address = p);
            CudaMallocFromPoolAsync: cudaMallocFromPoolAsync(p: *mut *mut c_void, size: usize, pool: Pool, s: Stream)
                Runtime Device [ALLOCATES POOLED] => alloc(out = p, size = size, device = |d| pool_device(pool, d), stream = s);
            CudaMallocFromPoolAsyncPtsz: cudaMallocFromPoolAsync_ptsz(p: *mut *mut c_void, size: usize, pool: Pool, s: Stream)
                Runtime Device [ALLOCATES POOLED] => alloc(out = p, size = size, device = |d| pool_device(pool, d), stream = s);
            CudaMallocManaged: cudaMallocManaged(p: *mut *mut c_void, size: usize, flags: c_uint)
                Runtime Managed [ALLOCATES] => alloc(out = p, size = size, device = |d| d, stream = 0);
            CudaMallocPitch: cudaMallocPitch(p: *mut *mut c_void, pitch: *mut usize, width: usize, height: usize)
                Runtime Device [ALLOCATES] => alloc(out = p, size = out(pitch).wrapping_mul(height), device = |d| d, stream = 0);
            CudaMallocHost: cudaMallocHost(p: *mut *mut c_void, size: usize)
                Runtime Host [ALLOCATES] => alloc(out = p, size = size, device = |d| d, stream = 0);
            CudaHostAlloc: cudaHostAlloc(p: *mut *mut c_void, size: usize, flags: c_uint)
                Runtime Host [ALLOCATES] => alloc(out = p, size = size, device = |d| d, stream = 0);
            CudaFreeHost: cudaFreeHost(p: *mut c_void) Runtime Host [] => free(address = p);
            CuMemAlloc: cuMemAlloc_v2(p: *mut u64, size: usize)
                Driver Device [ALLOCATES] => alloc(out = p, size = size, device = |d| d, stream = 0);
            CuMemFree: cuMemFree_v2(p: u64) Driver Device [] => free(address = p);
            CuMemAllocManaged: cuMemAllocManaged(p: *mut u64, size: usize, flags: c_uint)
                Driver Managed [ALLOCATES] => alloc(out = p, size = size, device = |d| d, stream = 0);
            CuMemAllocPitch: cuMemAllocPitch_v2(p: *mut u64, pitch: *mut usize, width: usize, height: usize, elem: c_uint)
                Driver Device [ALLOCATES] => alloc(out = p, size = out(pitch).wrapping_mul(height), device = |d| d, stream = 0);
            CuMemAllocHost: cuMemAllocHost_v2(p: *mut *mut c_void, size: usize)
                Driver Host [ALLOCATES] => alloc(out = p, size = size, device = |d| d, stream = 0);
            CuMemHostAlloc: cuMemHostAlloc(p: *mut *mut c_void, size: usize, flags: c_uint)
                Driver Host [ALLOCATES] => alloc(out = p, size = size, device = |d| d, stream = 0);
            CuMemFreeHost: cuMemFreeHost(p: *mut c_void) Driver Host [] => free(address = p);
            CuMemAllocAsync: cuMemAllocAsync(p: *mut u64, size: usize, s: Stream)
                Driver Device [ALLOCATES POOLED] => alloc(out = p, size = size, device = |d| d, stream = s);
            CuMemAllocAsyncPtsz: cuMemAllocAsync_ptsz(p: *mut u64, size: usize, s: Stream)
                Driver Device [ALLOCATES POOLED] => alloc(out = p, size = size, device = |d| d, stream = s);
            CuMemFreeAsync: cuMemFreeAsync(p: u64, s: Stream) Driver Device [] => free(address = p);
            CuMemFreeAsyncPtsz: cuMemFreeAsync_ptsz(p: u64, s: Stream) Driver Device [] => free(address = p);
            CuMemAllocFromPoolAsync: cuMemAllocFromPoolAsync(p: *mut u64, size: usize, pool: Pool, s: Stream)
                Driver Device [ALLOCATES POOLED] => alloc(out = p, size = size, device = |d| pool_device(pool, d), stream = s);
            CuMemAllocFromPoolAsyncPtsz: cuMemAllocFromPoolAsync_ptsz(p: *mut u64, size: usize, pool: Pool, s: Stream)
                Driver Device [ALLOCATES POOLED] => alloc(out = p, size = size, device = |d| pool_device(pool, d), stream = s);
            CuMemAddressReserve: cuMemAddressReserve(p: *mut u64, size: usize, align: usize, addr: u64, flags: c_ulonglong)
                Driver Device [] => custom(vmm);
            CuMemAddressFree: cuMemAddressFree(va: u64, size: usize) Driver Device [] => custom(vmm);
            CuMemCreate: cuMemCreate(h: *mut u64, size: usize, prop: *const c_void, flags: c_ulonglong)
                Driver Device [ALLOCATES] => custom(vmm);
            CuMemRelease: cuMemRelease(handle: u64) Driver Device [] => custom(vmm);
            CuMemMap: cuMemMap(va: u64, size: usize, offset: usize, handle: u64, flags: c_ulonglong)
                Driver Device [] => custom(vmm);
            CuMemUnmap: cuMemUnmap(va: u64, size: usize) Driver Device [] => custom(vmm);
            CudaMalloc3D: cudaMalloc3D(p: *mut PitchedPtr, extent: Extent)
                Runtime Device [ALLOCATES] => alloc(out = p as *const u64, size = out(p).pitch.wrapping_mul(extent.height).wrapping_mul(extent.depth), device = |d| d, stream = 0);
        }
        own {
            KvscopeMalloc: kvscope_malloc Device [ALLOCATES POOLED PLUGGABLE] => pluggable;
            KvscopeFree: kvscope_free Device [PLUGGABLE] => pluggable;
        }
        observed {
            cudaSetDevice(device: c_int) Runtime => runtime;
            cudaDeviceGetDefaultMemPool(pool: *mut Pool, device: c_int) Runtime => runtime;
            cuDevicePrimaryCtxRetain(ctx: *mut Ctx, device: c_int) Driver => driver;
            cuCtxCreate_v2(ctx: *mut Ctx, flags: c_uint, device: c_int) Driver => driver;
            cuCtxSetCurrent(ctx: Ctx) Driver => driver;
            cuDeviceGetDefaultMemPool(pool: *mut Pool, device: c_int) Driver => driver;
            cuMemPoolCreate(pool: *mut Pool, props: *const c_void) Driver => driver;
            cuGetProcAddress_v2(symbol: *const c_char, pfn: *mut *mut c_void, version: c_int, flags: c_ulonglong, status: *mut c_int)
                Driver => entry;
            cuGetProcAddress(symbol: *const c_char, pfn: *mut *mut c_void, version: c_int, flags: c_ulonglong) Driver => entry;
            cudaGetDriverEntryPoint(symbol: *const c_char, pfn: *mut *mut c_void, flags: c_ulonglong, status: *mut c_int)
                Runtime => entry;
            cudaGetDriverEntryPointByVersion(symbol: *const c_char, pfn: *mut *mut c_void, version: c_uint, flags: c_ulonglong, status: *mut c_int)
                Runtime => entry;
        }
        exported {
            dlsym => table;
            sigaction => signal;
            signal => signal;
            kvscope_mark => exports;
            kvscope_dump => exports;
            kvscope_live_bytes => exports;
            kvscope_framework_counters => exports;
            kvscope_init => pluggable;
            kvscope_reset => pluggable;
            kvscope_memory_fraction => pluggable;
            kvscope_record_stream => pluggable;
        }
        }
    };
}
pub(crate) use hooked_functions;
