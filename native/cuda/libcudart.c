/* The stand-in CUDA runtime, libcudart.so.12. Like the real runtime it does
 * not link libcuda: it dlopen()s libcuda.so.1, takes cuGetProcAddress_v2 with
 * dlsym() on that handle and obtains every driver entry point through it,
 * so its driver calls are invisible to a plain LD_PRELOAD interposer.
 * Exported symbols carry the version node libcudart.so.12 (see cudart.map). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "cuda.h"
#include "cuda_runtime_api.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_DEVICES 16

typedef CUresult (*gpa_fn)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);

/* Driver entry points, fetched at the version whose ABI the runtime uses. */
static struct {
    gpa_fn getProcAddress;
    CUresult (*init)(unsigned int);
    CUresult (*driverGetVersion)(int *);
    CUresult (*deviceGetCount)(int *);
    CUresult (*primaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*ctxSetCurrent)(CUcontext);
    CUresult (*ctxSynchronize)(void);
    CUresult (*memGetInfo)(size_t *, size_t *);
    CUresult (*memAlloc)(CUdeviceptr *, size_t);
    CUresult (*memFree)(CUdeviceptr);
    CUresult (*memAllocManaged)(CUdeviceptr *, size_t, unsigned int);
    CUresult (*memAllocPitch)(CUdeviceptr *, size_t *, size_t, size_t, unsigned int);
    CUresult (*memAllocHost)(void **, size_t);
    CUresult (*memHostAlloc)(void **, size_t, unsigned int);
    CUresult (*memFreeHost)(void *);
    CUresult (*memAllocAsync)(CUdeviceptr *, size_t, CUstream);
    CUresult (*memAllocAsync_ptsz)(CUdeviceptr *, size_t, CUstream);
    CUresult (*memFreeAsync)(CUdeviceptr, CUstream);
    CUresult (*memFreeAsync_ptsz)(CUdeviceptr, CUstream);
    CUresult (*memAllocFromPoolAsync)(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
    CUresult (*memAllocFromPoolAsync_ptsz)(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
    CUresult (*deviceGetDefaultMemPool)(CUmemoryPool *, CUdevice);
    CUresult (*memPoolGetAttribute)(CUmemoryPool, CUmemPool_attribute, void *);
    CUresult (*memPoolSetAttribute)(CUmemoryPool, CUmemPool_attribute, void *);
    CUresult (*memPoolTrimTo)(CUmemoryPool, size_t);
    CUresult (*streamCreate)(CUstream *, unsigned int);
    CUresult (*streamDestroy)(CUstream);
    CUresult (*streamSynchronize)(CUstream);
    CUresult (*streamSynchronize_ptsz)(CUstream);
} drv;

static const struct {
    const char *name;
    int version;
    cuuint64_t flags;
    size_t offset;
} wanted[] = {
#define W(field, name, ver, fl) {name, ver, fl, offsetof(__typeof__(drv), field)}
    W(init, "cuInit", 2000, 0),
    W(driverGetVersion, "cuDriverGetVersion", 2020, 0),
    W(deviceGetCount, "cuDeviceGetCount", 2000, 0),
    W(primaryCtxRetain, "cuDevicePrimaryCtxRetain", 7000, 0),
    W(ctxSetCurrent, "cuCtxSetCurrent", 4000, 0),
    W(ctxSynchronize, "cuCtxSynchronize", 2000, 0),
    W(memGetInfo, "cuMemGetInfo", 3020, 0),
    W(memAlloc, "cuMemAlloc", 3020, 0),
    W(memFree, "cuMemFree", 3020, 0),
    W(memAllocManaged, "cuMemAllocManaged", 6000, 0),
    W(memAllocPitch, "cuMemAllocPitch", 3020, 0),
    W(memAllocHost, "cuMemAllocHost", 3020, 0),
    W(memHostAlloc, "cuMemHostAlloc", 2020, 0),
    W(memFreeHost, "cuMemFreeHost", 2000, 0),
    W(memAllocAsync, "cuMemAllocAsync", 11020, 0),
    W(memAllocAsync_ptsz, "cuMemAllocAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM),
    W(memFreeAsync, "cuMemFreeAsync", 11020, 0),
    W(memFreeAsync_ptsz, "cuMemFreeAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM),
    W(memAllocFromPoolAsync, "cuMemAllocFromPoolAsync", 11020, 0),
    W(memAllocFromPoolAsync_ptsz, "cuMemAllocFromPoolAsync", 11020,
      CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM),
    W(deviceGetDefaultMemPool, "cuDeviceGetDefaultMemPool", 11020, 0),
    W(memPoolGetAttribute, "cuMemPoolGetAttribute", 11020, 0),
    W(memPoolSetAttribute, "cuMemPoolSetAttribute", 11020, 0),
    W(memPoolTrimTo, "cuMemPoolTrimTo", 11020, 0),
    W(streamCreate, "cuStreamCreate", 2000, 0),
    W(streamDestroy, "cuStreamDestroy", 4000, 0),
    W(streamSynchronize, "cuStreamSynchronize", 2000, 0),
    W(streamSynchronize_ptsz, "cuStreamSynchronize", 2000,
      CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM),
#undef W
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static cudaError_t init_error;
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static CUcontext primary[MAX_DEVICES];
static __thread int tls_device;
static __thread CUcontext tls_ctx;
static __thread cudaError_t tls_last_error;

static cudaError_t from_cu(CUresult r) {
    switch (r) {
    case CUDA_SUCCESS: return cudaSuccess;
    case CUDA_ERROR_INVALID_VALUE: return cudaErrorInvalidValue;
    case CUDA_ERROR_OUT_OF_MEMORY: return cudaErrorMemoryAllocation;
    case CUDA_ERROR_NOT_INITIALIZED: return cudaErrorInitializationError;
    case CUDA_ERROR_DEINITIALIZED: return cudaErrorCudartUnloading;
    case CUDA_ERROR_STUB_LIBRARY: return cudaErrorStubLibrary;
    case CUDA_ERROR_NO_DEVICE: return cudaErrorNoDevice;
    case CUDA_ERROR_INVALID_DEVICE: return cudaErrorInvalidDevice;
    case CUDA_ERROR_INVALID_CONTEXT: return cudaErrorDeviceUninitialized;
    case CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND: return cudaErrorSharedObjectSymbolNotFound;
    case CUDA_ERROR_INVALID_HANDLE: return cudaErrorInvalidResourceHandle;
    case CUDA_ERROR_NOT_FOUND: return cudaErrorSymbolNotFound;
    case CUDA_ERROR_NOT_PERMITTED: return cudaErrorNotPermitted;
    case CUDA_ERROR_NOT_SUPPORTED: return cudaErrorNotSupported;
    default: return cudaErrorUnknown;
    }
}

static void load_driver(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        init_error = cudaErrorInsufficientDriver;
        return;
    }
    drv.getProcAddress = (gpa_fn)dlsym(h, "cuGetProcAddress_v2");
    if (!drv.getProcAddress) {
        init_error = cudaErrorInsufficientDriver;
        return;
    }
    void *probe;
    CUdriverProcAddressQueryResult st;
    drv.getProcAddress("", &probe, CUDART_VERSION, 0, &st);
    for (size_t i = 0; i < sizeof wanted / sizeof *wanted; i++) {
        void **slot = (void **)((char *)&drv + wanted[i].offset);
        if (drv.getProcAddress(wanted[i].name, slot, wanted[i].version, wanted[i].flags, &st) !=
            CUDA_SUCCESS) {
            init_error = cudaErrorInsufficientDriver;
            return;
        }
        if (i == 0) { /* cuInit comes first, before anything else is asked of the driver */
            CUresult r = drv.init(0);
            if (r != CUDA_SUCCESS) {
                init_error = from_cu(r);
                return;
            }
        }
    }
}

static cudaError_t fail(cudaError_t e) {
    if (e != cudaSuccess) tls_last_error = e;
    return e;
}

static cudaError_t ready(void) {
    pthread_once(&once, load_driver);
    return init_error;
}

/* Make the current device's primary context current on this thread. */
static cudaError_t ensure_ctx(void) {
    cudaError_t e = ready();
    if (e) return e;
    if (tls_ctx && primary[tls_device] == tls_ctx) return cudaSuccess;
    pthread_mutex_lock(&ctx_lock);
    CUresult r = CUDA_SUCCESS;
    if (!primary[tls_device]) r = drv.primaryCtxRetain(&primary[tls_device], tls_device);
    CUcontext c = primary[tls_device];
    pthread_mutex_unlock(&ctx_lock);
    if (r == CUDA_SUCCESS) r = drv.ctxSetCurrent(c);
    if (r == CUDA_SUCCESS) tls_ctx = c;
    return from_cu(r);
}

#define CALL(expr)                                                                                 \
    do {                                                                                           \
        cudaError_t e_ = ensure_ctx();                                                             \
        if (e_) return fail(e_);                                                                   \
        return fail(from_cu(expr));                                                                \
    } while (0)

EXPORT cudaError_t cudaMalloc(void **p, size_t size) {
    if (!p) return fail(cudaErrorInvalidValue);
    cudaError_t e = ensure_ctx();
    if (e) return fail(e);
    if (size == 0) {
        *p = NULL;
        return cudaSuccess;
    }
    CUdeviceptr d = 0;
    e = from_cu(drv.memAlloc(&d, size));
    if (e == cudaSuccess) *p = (void *)(uintptr_t)d;
    return fail(e);
}

EXPORT cudaError_t cudaFree(void *p) {
    cudaError_t e = ensure_ctx();
    if (e) return fail(e);
    if (!p) return cudaSuccess;
    return fail(from_cu(drv.memFree((CUdeviceptr)(uintptr_t)p)));
}

static cudaError_t malloc_async(void **p, size_t size, CUstream s, int ptsz) {
    if (!p) return fail(cudaErrorInvalidValue);
    cudaError_t e = ensure_ctx();
    if (e) return fail(e);
    CUdeviceptr d = 0;
    CUresult r = ptsz ? drv.memAllocAsync_ptsz(&d, size, s) : drv.memAllocAsync(&d, size, s);
    if (r == CUDA_SUCCESS) *p = (void *)(uintptr_t)d;
    return fail(from_cu(r));
}

EXPORT cudaError_t cudaMallocAsync(void **p, size_t size, cudaStream_t s) {
    return malloc_async(p, size, s, 0);
}
EXPORT cudaError_t cudaMallocAsync_ptsz(void **p, size_t size, cudaStream_t s) {
    return malloc_async(p, size, s, 1);
}
EXPORT cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
    CALL(drv.memFreeAsync((CUdeviceptr)(uintptr_t)p, s));
}
EXPORT cudaError_t cudaFreeAsync_ptsz(void *p, cudaStream_t s) {
    CALL(drv.memFreeAsync_ptsz((CUdeviceptr)(uintptr_t)p, s));
}

static cudaError_t from_pool(void **p, size_t size, cudaMemPool_t pool, cudaStream_t s,
                             int ptsz) {
    if (!p) return fail(cudaErrorInvalidValue);
    cudaError_t e = ensure_ctx();
    if (e) return fail(e);
    CUdeviceptr d = 0;
    CUresult r = ptsz ? drv.memAllocFromPoolAsync_ptsz(&d, size, pool, s)
                      : drv.memAllocFromPoolAsync(&d, size, pool, s);
    if (r == CUDA_SUCCESS) *p = (void *)(uintptr_t)d;
    return fail(from_cu(r));
}
EXPORT cudaError_t cudaMallocFromPoolAsync(void **p, size_t size, cudaMemPool_t pool,
                                           cudaStream_t s) {
    return from_pool(p, size, pool, s, 0);
}
EXPORT cudaError_t cudaMallocFromPoolAsync_ptsz(void **p, size_t size, cudaMemPool_t pool,
                                                cudaStream_t s) {
    return from_pool(p, size, pool, s, 1);
}

EXPORT cudaError_t cudaMallocManaged(void **p, size_t size, unsigned int flags) {
    if (!p) return fail(cudaErrorInvalidValue);
    cudaError_t e = ensure_ctx();
    if (e) return fail(e);
    CUdeviceptr d = 0;
    e = from_cu(drv.memAllocManaged(&d, size, flags));
    if (e == cudaSuccess) *p = (void *)(uintptr_t)d;
    return fail(e);
}

EXPORT cudaError_t cudaMallocPitch(void **p, size_t *pitch, size_t width, size_t height) {
    if (!p) return fail(cudaErrorInvalidValue);
    cudaError_t e = ensure_ctx();
    if (e) return fail(e);
    CUdeviceptr d = 0;
    e = from_cu(drv.memAllocPitch(&d, pitch, width, height, 16));
    if (e == cudaSuccess) *p = (void *)(uintptr_t)d;
    return fail(e);
}

/* As the real runtime: pitched rows of extent.width bytes, height x depth of them. */
EXPORT cudaError_t cudaMalloc3D(struct cudaPitchedPtr *pp, struct cudaExtent extent) {
    if (!pp) return fail(cudaErrorInvalidValue);
    cudaError_t e = ensure_ctx();
    if (e) return fail(e);
    CUdeviceptr d = 0;
    size_t pitch = 0;
    e = from_cu(drv.memAllocPitch(&d, &pitch, extent.width, extent.height * extent.depth, 16));
    if (e == cudaSuccess) {
        pp->ptr = (void *)(uintptr_t)d;
        pp->pitch = pitch;
        pp->xsize = extent.width;
        pp->ysize = extent.height;
    }
    return fail(e);
}

EXPORT cudaError_t cudaMallocHost(void **p, size_t size) { CALL(drv.memAllocHost(p, size)); }
EXPORT cudaError_t cudaHostAlloc(void **p, size_t size, unsigned int flags) {
    CALL(drv.memHostAlloc(p, size, flags));
}
EXPORT cudaError_t cudaFreeHost(void *p) { CALL(drv.memFreeHost(p)); }
EXPORT cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { CALL(drv.memGetInfo(f, t)); }
EXPORT cudaError_t cudaDeviceSynchronize(void) { CALL(drv.ctxSynchronize()); }

EXPORT cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return fail(cudaErrorInvalidValue);
    cudaError_t e = ready();
    if (e) return fail(e);
    return fail(from_cu(drv.deviceGetCount(count)));
}

EXPORT cudaError_t cudaSetDevice(int device) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e) return e;
    if (device < 0 || device >= n || device >= MAX_DEVICES) return fail(cudaErrorInvalidDevice);
    tls_device = device;
    return ensure_ctx();
}

EXPORT cudaError_t cudaGetDevice(int *device) {
    if (!device) return fail(cudaErrorInvalidValue);
    cudaError_t e = ready();
    if (e) return fail(e);
    *device = tls_device;
    return cudaSuccess;
}

EXPORT cudaError_t cudaStreamCreate(cudaStream_t *s) { CALL(drv.streamCreate(s, 0)); }
EXPORT cudaError_t cudaStreamDestroy(cudaStream_t s) { CALL(drv.streamDestroy(s)); }
EXPORT cudaError_t cudaStreamSynchronize(cudaStream_t s) { CALL(drv.streamSynchronize(s)); }
EXPORT cudaError_t cudaStreamSynchronize_ptsz(cudaStream_t s) {
    CALL(drv.streamSynchronize_ptsz(s));
}

EXPORT cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device) {
    CALL(drv.deviceGetDefaultMemPool(pool, device));
}
EXPORT cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr,
                                           void *value) {
    CALL(drv.memPoolGetAttribute(pool, (CUmemPool_attribute)attr, value));
}
EXPORT cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, enum cudaMemPoolAttr attr,
                                           void *value) {
    CALL(drv.memPoolSetAttribute(pool, (CUmemPool_attribute)attr, value));
}
EXPORT cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t keep) {
    CALL(drv.memPoolTrimTo(pool, keep));
}

EXPORT cudaError_t cudaGetLastError(void) {
    cudaError_t e = tls_last_error;
    tls_last_error = cudaSuccess;
    return e;
}

EXPORT const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorSymbolNotFound: return "cudaErrorSymbolNotFound";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
    }
}

EXPORT const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInsufficientDriver:
        return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorSymbolNotFound: return "named symbol not found";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
    }
}

EXPORT cudaError_t cudaRuntimeGetVersion(int *v) {
    if (!v) return fail(cudaErrorInvalidValue);
    *v = CUDART_VERSION;
    return cudaSuccess;
}

EXPORT cudaError_t cudaDriverGetVersion(int *v) {
    if (!v) return fail(cudaErrorInvalidValue);
    if (ready() != cudaSuccess) {
        *v = 0; /* no driver: 0, as the real runtime reports */
        return cudaSuccess;
    }
    return fail(from_cu(drv.driverGetVersion(v)));
}

static cudaError_t entry_point(const char *symbol, void **fn, int version,
                               unsigned long long flags,
                               enum cudaDriverEntryPointQueryResult *status) {
    if (!symbol || !fn) return fail(cudaErrorInvalidValue);
    cudaError_t e = ready();
    if (e) return fail(e);
    CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    CUresult r = drv.getProcAddress(symbol, fn, version, flags, &st);
    if (status) *status = (enum cudaDriverEntryPointQueryResult)st;
    /* Not found is reported through the status, not as an error. */
    if (r == CUDA_ERROR_NOT_FOUND) return cudaSuccess;
    return fail(from_cu(r));
}

EXPORT cudaError_t cudaGetDriverEntryPoint(const char *symbol, void **fn, unsigned long long flags,
                                           enum cudaDriverEntryPointQueryResult *status) {
    return entry_point(symbol, fn, CUDART_VERSION, flags, status);
}

EXPORT cudaError_t cudaGetDriverEntryPointByVersion(const char *symbol, void **fn,
                                                    unsigned int version,
                                                    unsigned long long flags,
                                                    enum cudaDriverEntryPointQueryResult *status) {
    return entry_point(symbol, fn, (int)version, flags, status);
}
