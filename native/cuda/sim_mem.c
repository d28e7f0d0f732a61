/* Plain, pitched, managed and pinned-host allocations, memory info, and the
 * stream-ordered entry points (which delegate to the pools). */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

enum kind { K_DEVICE = 1, K_MANAGED, K_HOST };

typedef struct {
    uint64_t charged; /* device bytes charged (granularity-rounded), 0 for host/managed */
    uint64_t span;    /* address range taken */
    int device;
    int kind;
} alloc_rec;

static sim_map allocs; /* address -> alloc_rec*, under sim_lock */

static CUresult device_alloc(int dev, uint64_t size, int kind, CUdeviceptr *out) {
    uint64_t span = round_up(size, SIM_GRANULARITY);
    uint64_t charged = kind == K_DEVICE ? span : 0;
    alloc_rec *rec = malloc(sizeof *rec);
    if (!rec) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult r = sim_charge(dev, charged);
    if (r) {
        free(rec);
        return r;
    }
    uint64_t addr = sim_va_take(dev, span);
    if (!addr) {
        sim_uncharge(dev, charged);
        free(rec);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *rec = (alloc_rec){charged, span, dev, kind};
    if (sim_map_put(&allocs, addr, rec) != 0) {
        sim_va_give(dev, addr, span);
        sim_uncharge(dev, charged);
        free(rec);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *out = addr;
    return CUDA_SUCCESS;
}

static CUresult alloc_on_current(uint64_t size, int kind, CUdeviceptr *out) {
    if (!out || size == 0) return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    pthread_mutex_lock(&sim_lock);
    r = device_alloc(dev, size, kind, out);
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize) {
    return alloc_on_current(bytesize, K_DEVICE, dptr);
}

EXPORT CUresult simcudaMemAllocUnhooked(CUdeviceptr *dptr, size_t bytesize) {
    return alloc_on_current(bytesize, K_DEVICE, dptr);
}

EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags) {
    if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST)
        return CUDA_ERROR_INVALID_VALUE;
    return alloc_on_current(bytesize, K_MANAGED, dptr);
}

EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t width, size_t height,
                                   unsigned int elem) {
    if (!pitch || width == 0 || height == 0) return CUDA_ERROR_INVALID_VALUE;
    if (elem != 4 && elem != 8 && elem != 16) return CUDA_ERROR_INVALID_VALUE;
    size_t p = (size_t)round_up(width, 512);
    CUresult r = alloc_on_current((uint64_t)p * height, K_DEVICE, dptr);
    if (r == CUDA_SUCCESS) *pitch = p;
    return r;
}

static CUresult free_any(CUdeviceptr ptr, int want_host) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (!want_host && sim_pool_owns(ptr)) return sim_pool_free(ptr);
    pthread_mutex_lock(&sim_lock);
    alloc_rec *rec = sim_map_get(&allocs, ptr);
    if (!rec || (rec->kind == K_HOST) != want_host) {
        pthread_mutex_unlock(&sim_lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    sim_map_del(&allocs, ptr);
    if (rec->kind == K_HOST) {
        free((void *)(uintptr_t)ptr);
    } else {
        sim_uncharge(rec->device, rec->charged);
        sim_va_give(rec->device, ptr, rec->span);
    }
    pthread_mutex_unlock(&sim_lock);
    free(rec);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
    if (dptr == 0) return sim_check_init();
    return free_any(dptr, 0);
}

/* Pinned host memory is real host memory: programs write into it. */
static CUresult host_alloc(void **pp, size_t size) {
    if (!pp || size == 0) return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    void *p = NULL;
    if (posix_memalign(&p, 4096, size) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    alloc_rec *rec = malloc(sizeof *rec);
    if (!rec) {
        free(p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *rec = (alloc_rec){0, size, dev, K_HOST};
    pthread_mutex_lock(&sim_lock);
    int bad = sim_map_put(&allocs, (uint64_t)(uintptr_t)p, rec);
    pthread_mutex_unlock(&sim_lock);
    if (bad) {
        free(rec);
        free(p);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *pp = p;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAllocHost_v2(void **pp, size_t bytesize) { return host_alloc(pp, bytesize); }

EXPORT CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int flags) {
    if (flags & ~0x7u) return CUDA_ERROR_INVALID_VALUE;
    return host_alloc(pp, bytesize);
}

EXPORT CUresult cuMemFreeHost(void *p) {
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    return free_any((CUdeviceptr)(uintptr_t)p, 1);
}

EXPORT CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total) {
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    pthread_mutex_lock(&sim_lock);
    *total = sim_devices[dev].capacity;
    *free_bytes = sim_devices[dev].capacity - sim_devices[dev].used;
    pthread_mutex_unlock(&sim_lock);
    return CUDA_SUCCESS;
}

/* ---- stream-ordered allocation: on the device's default pool ---- */

static CUresult alloc_async(CUdeviceptr *dptr, size_t size, struct sim_pool *pool) {
    if (!dptr || size == 0) return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    if (!pool) {
        pthread_mutex_lock(&sim_lock);
        if (!sim_devices[dev].default_pool) sim_devices[dev].default_pool = sim_pool_new(dev);
        pool = sim_devices[dev].default_pool;
        pthread_mutex_unlock(&sim_lock);
        if (!pool) return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return sim_pool_alloc(pool, size, dptr);
}

EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t size, CUstream s) {
    (void)s;
    return alloc_async(dptr, size, NULL);
}
EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream s) {
    (void)s;
    return alloc_async(dptr, size, NULL);
}

static CUresult from_pool(CUdeviceptr *dptr, size_t size, CUmemoryPool h) {
    struct sim_pool *p = sim_pool_from_handle(h);
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    return alloc_async(dptr, size, p);
}
EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                        CUstream s) {
    (void)s;
    return from_pool(dptr, size, pool);
}
EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                             CUstream s) {
    (void)s;
    return from_pool(dptr, size, pool);
}

/* Stream-ordered free also takes memory from cuMemAlloc, as the real driver does. */
static CUresult free_async(CUdeviceptr p) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (p == 0) return CUDA_ERROR_INVALID_VALUE;
    return free_any(p, 0);
}
EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
    (void)s;
    return free_async(p);
}
EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr p, CUstream s) {
    (void)s;
    return free_async(p);
}

EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *out, CUdevice dev) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&sim_lock);
    if (!sim_devices[dev].default_pool) sim_devices[dev].default_pool = sim_pool_new(dev);
    struct sim_pool *p = sim_devices[dev].default_pool;
    pthread_mutex_unlock(&sim_lock);
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    *out = sim_pool_handle(p);
    return CUDA_SUCCESS;
}

/* ---- legacy 32-bit-pointer ABI: exported like the real driver, but the
 * stand-in's addresses do not fit in 32 bits, so these report NOT_SUPPORTED. */
#undef cuMemAlloc
#undef cuMemFree
#undef cuMemGetInfo
#undef cuMemAllocPitch
#undef cuMemAllocHost
EXPORT CUresult cuMemAlloc(CUdeviceptr_v1 *p, unsigned int s) {
    (void)p, (void)s;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuMemFree(CUdeviceptr_v1 p) {
    (void)p;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuMemGetInfo(unsigned int *f, unsigned int *t) {
    (void)f, (void)t;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuMemAllocPitch(CUdeviceptr_v1 *p, unsigned int *pitch, unsigned int w,
                                unsigned int h, unsigned int e) {
    (void)p, (void)pitch, (void)w, (void)h, (void)e;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuMemAllocHost(void **pp, unsigned int s) {
    (void)pp, (void)s;
    return CUDA_ERROR_NOT_SUPPORTED;
}
