/* Simulated devices, initialisation, contexts and streams. Device memory is
 * an address range plus a byte count: no host memory backs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim_internal.h"

#define CTX_MAGIC 0x43545831u
#define STREAM_MAGIC 0x53545231u
#define DEVICE_VA_BASE 0x100000000000ull /* 16 TiB */
#define DEVICE_VA_SPAN 0x040000000000ull /* 4 TiB per device */

pthread_mutex_t sim_lock = PTHREAD_MUTEX_INITIALIZER;
sim_device sim_devices[SIM_MAX_DEVICES];
int sim_device_count;
uint64_t sim_context_bytes;

static int initialized;      /* cuInit succeeded */
static int forked_after_init; /* this process is a child forked after cuInit */
static CUresult init_result; /* what cuInit returned the first time */
static int driver_version = CUDA_VERSION;
static __thread struct CUctx_st *tls_ctx;

struct CUstream_st {
    uint32_t magic;
    int device;
};

uint64_t sim_parse_size(const char *s, uint64_t fallback) {
    if (!s || !*s) return fallback;
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return fallback;
    while (*end == ' ') end++;
    uint64_t mul = 1;
    if (!strcasecmp(end, "") || !strcasecmp(end, "b")) mul = 1;
    else if (!strcasecmp(end, "kib") || !strcasecmp(end, "k")) mul = 1ull << 10;
    else if (!strcasecmp(end, "mib") || !strcasecmp(end, "m")) mul = 1ull << 20;
    else if (!strcasecmp(end, "gib") || !strcasecmp(end, "g")) mul = 1ull << 30;
    else if (!strcasecmp(end, "tib") || !strcasecmp(end, "t")) mul = 1ull << 40;
    else if (!strcasecmp(end, "kb")) mul = 1000ull;
    else if (!strcasecmp(end, "mb")) mul = 1000000ull;
    else if (!strcasecmp(end, "gb")) mul = 1000000000ull;
    else if (!strcasecmp(end, "tb")) mul = 1000000000000ull;
    else return fallback;
    return (uint64_t)(v * (double)mul);
}

EXPORT CUresult cuDriverGetVersion(int *v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    const char *e = getenv("SIMCUDA_DRIVER_VERSION");
    *v = e ? atoi(e) : driver_version;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuInit(unsigned int flags) {
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    if (forked_after_init) return CUDA_ERROR_NOT_INITIALIZED;
    pthread_mutex_lock(&sim_lock);
    if (!initialized && init_result == CUDA_SUCCESS) {
        const char *n = getenv("SIMCUDA_DEVICES");
        int count = n ? atoi(n) : 1;
        if (count < 0) count = 0;
        if (count > SIM_MAX_DEVICES) count = SIM_MAX_DEVICES;
        uint64_t cap = sim_parse_size(getenv("SIMCUDA_DEVICE_MEM"), 80ull << 30);
        sim_context_bytes = sim_parse_size(getenv("SIMCUDA_CONTEXT_MEM"), 512ull << 20);
        for (int d = 0; d < count; d++) {
            sim_device *dev = &sim_devices[d];
            memset(dev, 0, sizeof *dev);
            dev->capacity = cap;
            dev->va_next = DEVICE_VA_BASE + (uint64_t)d * DEVICE_VA_SPAN;
            dev->va_end = dev->va_next + DEVICE_VA_SPAN;
            dev->ctx.magic = CTX_MAGIC;
            dev->ctx.device = d;
        }
        sim_device_count = count;
        if (count == 0) {
            init_result = CUDA_ERROR_NO_DEVICE;
        } else {
            initialized = 1;
        }
    }
    CUresult r = initialized ? CUDA_SUCCESS : init_result;
    pthread_mutex_unlock(&sim_lock);
    return r;
}

/* As with NVIDIA's driver, a child forked after cuInit cannot use CUDA: every
 * call fails with CUDA_ERROR_NOT_INITIALIZED, cuInit included. The lock is
 * held across fork so that the child never inherits it taken. */
static void fork_prepare(void) { pthread_mutex_lock(&sim_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&sim_lock); }
static void fork_child(void) {
    pthread_mutex_unlock(&sim_lock);
    if (initialized) forked_after_init = 1;
}
__attribute__((constructor)) static void register_fork_handlers(void) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

CUresult sim_check_init(void) {
    if (forked_after_init) return CUDA_ERROR_NOT_INITIALIZED;
    if (initialized) return CUDA_SUCCESS;
    return init_result != CUDA_SUCCESS ? init_result : CUDA_ERROR_NOT_INITIALIZED;
}

int sim_valid_device(int dev) { return dev >= 0 && dev < sim_device_count; }

CUresult sim_current_device(int *dev) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (!tls_ctx || tls_ctx->magic != CTX_MAGIC) return CUDA_ERROR_INVALID_CONTEXT;
    if (sim_devices[tls_ctx->device].ctx_refcount == 0) return CUDA_ERROR_INVALID_CONTEXT;
    *dev = tls_ctx->device;
    return CUDA_SUCCESS;
}

CUresult sim_charge(int dev, uint64_t bytes) {
    sim_device *d = &sim_devices[dev];
    if (bytes > d->capacity - d->used) return CUDA_ERROR_OUT_OF_MEMORY;
    d->used += bytes;
    sim_publish_usage();
    return CUDA_SUCCESS;
}

void sim_uncharge(int dev, uint64_t bytes) {
    sim_device *d = &sim_devices[dev];
    d->used = bytes > d->used ? 0 : d->used - bytes;
    sim_publish_usage();
}

/* Device address space: first fit over the freed ranges (lowest address
 * first, so a range freed a moment ago comes back for the next request that
 * fits), else the bump pointer. Freed ranges coalesce with their neighbours
 * and with the bump pointer, so address space is reused whatever the sizes. */
uint64_t sim_va_take(int dev, uint64_t size) {
    sim_device *d = &sim_devices[dev];
    for (size_t i = 0; i < d->free_n; i++) {
        sim_range *r = &d->free_va[i];
        if (r->size < size) continue;
        uint64_t a = r->start;
        r->start += size;
        r->size -= size;
        if (r->size == 0) {
            memmove(r, r + 1, (d->free_n - i - 1) * sizeof *r);
            d->free_n--;
        }
        return a;
    }
    if (size > d->va_end - d->va_next) return 0;
    uint64_t a = d->va_next;
    d->va_next += size;
    return a;
}

void sim_va_give(int dev, uint64_t addr, uint64_t size) {
    sim_device *d = &sim_devices[dev];
    size_t i = 0;
    while (i < d->free_n && d->free_va[i].start < addr) i++;
    int joins_prev = i > 0 && d->free_va[i - 1].start + d->free_va[i - 1].size == addr;
    int joins_next = i < d->free_n && addr + size == d->free_va[i].start;
    if (joins_prev && joins_next) {
        d->free_va[i - 1].size += size + d->free_va[i].size;
        memmove(&d->free_va[i], &d->free_va[i + 1], (d->free_n - i - 1) * sizeof *d->free_va);
        d->free_n--;
        i--;
    } else if (joins_prev) {
        d->free_va[--i].size += size;
    } else if (joins_next) {
        d->free_va[i].start = addr;
        d->free_va[i].size += size;
    } else {
        if (d->free_n == d->free_cap) {
            size_t cap = d->free_cap ? d->free_cap * 2 : 64;
            sim_range *v = realloc(d->free_va, cap * sizeof *v);
            if (!v) return; /* the range is lost to reuse, nothing else */
            d->free_va = v;
            d->free_cap = cap;
        }
        memmove(&d->free_va[i + 1], &d->free_va[i], (d->free_n - i) * sizeof *d->free_va);
        d->free_va[i] = (sim_range){addr, size};
        d->free_n++;
    }
    /* A free range at the top goes back to the bump pointer. */
    sim_range *last = &d->free_va[d->free_n - 1];
    if (last->start + last->size == d->va_next) {
        d->va_next = last->start;
        d->free_n--;
    }
}

EXPORT CUresult cuDeviceGetCount(int *count) {
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    *count = sim_device_count;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(ordinal)) return CUDA_ERROR_INVALID_DEVICE;
    *device = ordinal;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "kvscope simulated GPU (%llu MiB)",
             (unsigned long long)(sim_devices[dev].capacity >> 20));
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetPCIBusId(char *bus, int len, CUdevice dev) {
    if (!bus || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    snprintf(bus, (size_t)len, "0000:%02x:00.0", 0x10 + dev);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = sim_devices[dev].capacity;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) {
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&sim_lock);
    sim_device *d = &sim_devices[dev];
    if (d->ctx_refcount == 0) r = sim_charge(dev, sim_context_bytes);
    if (r == CUDA_SUCCESS) {
        d->ctx_refcount++;
        *pctx = &d->ctx;
    }
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&sim_lock);
    sim_device *d = &sim_devices[dev];
    if (d->ctx_refcount == 0) {
        r = CUDA_ERROR_INVALID_CONTEXT;
    } else if (--d->ctx_refcount == 0) {
        sim_uncharge(dev, sim_context_bytes);
    }
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&sim_lock);
    if (sim_devices[dev].ctx_refcount > 0) sim_uncharge(dev, sim_context_bytes);
    sim_devices[dev].ctx_refcount = 0;
    pthread_mutex_unlock(&sim_lock);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active) {
    if (!flags || !active) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    if (!sim_valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&sim_lock);
    *flags = 0;
    *active = sim_devices[dev].ctx_refcount > 0;
    pthread_mutex_unlock(&sim_lock);
    return CUDA_SUCCESS;
}

/* The stand-in keeps one context per device: cuCtxCreate retains the primary one. */
EXPORT CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev) {
    (void)flags;
    CUresult r = cuDevicePrimaryCtxRetain(pctx, dev);
    if (r == CUDA_SUCCESS) tls_ctx = *pctx;
    return r;
}

EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (ctx && ctx->magic != CTX_MAGIC) return CUDA_ERROR_INVALID_CONTEXT;
    tls_ctx = ctx;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetCurrent(CUcontext *pctx) {
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    *pctx = tls_ctx;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxGetDevice(CUdevice *device) {
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    *device = dev;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuCtxSynchronize(void) {
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    sim_pools_sync(dev);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamCreate(CUstream *ph, unsigned int flags) {
    (void)flags;
    if (!ph) return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    struct CUstream_st *s = malloc(sizeof *s);
    if (!s) return CUDA_ERROR_OUT_OF_MEMORY;
    s->magic = STREAM_MAGIC;
    s->device = dev;
    *ph = s;
    return CUDA_SUCCESS;
}

static int is_builtin_stream(CUstream s) {
    return s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD;
}

EXPORT CUresult cuStreamDestroy_v2(CUstream s) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (is_builtin_stream(s) || s->magic != STREAM_MAGIC) return CUDA_ERROR_INVALID_HANDLE;
    s->magic = 0;
    free(s);
    return CUDA_SUCCESS;
}

static CUresult stream_sync(CUstream s) {
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    if (!is_builtin_stream(s)) {
        if (s->magic != STREAM_MAGIC) return CUDA_ERROR_INVALID_HANDLE;
        dev = s->device;
    }
    sim_pools_sync(dev);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamSynchronize(CUstream s) { return stream_sync(s); }

/* Events: the simulated device runs everything at once, so an event is
 * complete when recorded and waiting on it is free. Handles are checked. */
#define EVENT_MAGIC 0x45564e31u
struct CUevent_st {
    uint32_t magic;
    CUstream recorded_on;
};

/* The last cross-stream wait, for tests of stream-ordered frees. */
static CUstream last_wait_on, last_waiter;
static cuuint64_t waits;

EXPORT CUresult cuEventCreate(CUevent *ph, unsigned int flags) {
    (void)flags;
    if (!ph) return CUDA_ERROR_INVALID_VALUE;
    int dev;
    CUresult r = sim_current_device(&dev);
    if (r) return r;
    struct CUevent_st *e = malloc(sizeof *e);
    if (!e) return CUDA_ERROR_OUT_OF_MEMORY;
    e->magic = EVENT_MAGIC;
    e->recorded_on = NULL;
    *ph = e;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuEventRecord(CUevent e, CUstream s) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (!e || e->magic != EVENT_MAGIC) return CUDA_ERROR_INVALID_HANDLE;
    if (!is_builtin_stream(s) && s->magic != STREAM_MAGIC) return CUDA_ERROR_INVALID_HANDLE;
    e->recorded_on = s;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned int flags) {
    (void)flags;
    CUresult r = sim_check_init();
    if (r) return r;
    if (!e || e->magic != EVENT_MAGIC) return CUDA_ERROR_INVALID_HANDLE;
    if (!is_builtin_stream(s) && s->magic != STREAM_MAGIC) return CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_lock(&sim_lock);
    last_wait_on = e->recorded_on;
    last_waiter = s;
    waits++;
    pthread_mutex_unlock(&sim_lock);
    return CUDA_SUCCESS;
}

/* Not CUDA: how many cuStreamWaitEvent calls succeeded, and the streams of the last. */
EXPORT cuuint64_t simcudaStreamWaits(CUstream *recorded_on, CUstream *waiter) {
    pthread_mutex_lock(&sim_lock);
    if (recorded_on) *recorded_on = last_wait_on;
    if (waiter) *waiter = last_waiter;
    cuuint64_t n = waits;
    pthread_mutex_unlock(&sim_lock);
    return n;
}

EXPORT CUresult cuEventDestroy_v2(CUevent e) {
    CUresult r = sim_check_init();
    if (r) return r;
    if (!e || e->magic != EVENT_MAGIC) return CUDA_ERROR_INVALID_HANDLE;
    e->magic = 0;
    free(e);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamSynchronize_ptsz(CUstream s) { return stream_sync(s); }

static const char *error_name(CUresult e) {
    switch (e) {
    case CUDA_SUCCESS: return "CUDA_SUCCESS";
    case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case CUDA_ERROR_DEINITIALIZED: return "CUDA_ERROR_DEINITIALIZED";
    case CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case CUDA_ERROR_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case CUDA_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case CUDA_ERROR_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
    default: return NULL;
    }
}

EXPORT CUresult cuGetErrorName(CUresult e, const char **s) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    *s = error_name(e);
    return *s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuGetErrorString(CUresult e, const char **s) {
    if (!s) return CUDA_ERROR_INVALID_VALUE;
    switch (e) {
    case CUDA_SUCCESS: *s = "no error"; break;
    case CUDA_ERROR_INVALID_VALUE: *s = "invalid argument"; break;
    case CUDA_ERROR_OUT_OF_MEMORY: *s = "out of memory"; break;
    case CUDA_ERROR_NOT_INITIALIZED: *s = "initialization error"; break;
    case CUDA_ERROR_NO_DEVICE: *s = "no CUDA-capable device is detected"; break;
    case CUDA_ERROR_INVALID_DEVICE: *s = "invalid device ordinal"; break;
    case CUDA_ERROR_INVALID_CONTEXT: *s = "invalid device context"; break;
    case CUDA_ERROR_INVALID_HANDLE: *s = "invalid resource handle"; break;
    case CUDA_ERROR_NOT_FOUND: *s = "named symbol not found"; break;
    case CUDA_ERROR_NOT_SUPPORTED: *s = "operation not supported"; break;
    default: *s = NULL; return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}
