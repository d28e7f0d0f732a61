/* cuGetProcAddress: resolves a base name the way the real driver does, by
 * the caller's CUDA version (cuMemAlloc at >= 3020 is cuMemAlloc_v2) and
 * stream flags (per-thread default stream selects the _ptsz entry). */
#include <string.h>

#include "sim_internal.h"

#undef cuDeviceTotalMem
#undef cuCtxCreate
#undef cuMemGetInfo
#undef cuMemAlloc
#undef cuMemAllocPitch
#undef cuMemFree
#undef cuMemAllocHost
#undef cuStreamDestroy
#undef cuDevicePrimaryCtxRelease
#undef cuDevicePrimaryCtxReset
#undef cuGetProcAddress
#undef cuEventDestroy

/* Legacy entry points, exported like the real driver's. */
CUresult cuMemAlloc(CUdeviceptr_v1 *, unsigned int);
CUresult cuMemFree(CUdeviceptr_v1);
CUresult cuMemGetInfo(unsigned int *, unsigned int *);
CUresult cuMemAllocPitch(CUdeviceptr_v1 *, unsigned int *, unsigned int, unsigned int,
                         unsigned int);
CUresult cuMemAllocHost(void **, unsigned int);

EXPORT CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev) {
    (void)bytes, (void)dev;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev) {
    return cuCtxCreate_v2(pctx, flags, dev);
}
EXPORT CUresult cuStreamDestroy(CUstream s) { return cuStreamDestroy_v2(s); }
EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice dev) { return cuDevicePrimaryCtxRelease_v2(dev); }
EXPORT CUresult cuDevicePrimaryCtxReset(CUdevice dev) { return cuDevicePrimaryCtxReset_v2(dev); }
EXPORT CUresult cuEventDestroy(CUevent e) { return cuEventDestroy_v2(e); }

typedef struct {
    const char *name;
    int since;     /* first CUDA version that has it */
    void *fn;      /* the entry before v2_since (or the only one) */
    int v2_since;  /* 0: no _v2 */
    void *fn_v2;
    void *fn_ptsz; /* NULL: no per-thread-default-stream variant */
} entry;

#define E(n, s) {#n, s, (void *)n, 0, NULL, NULL}
#define V2(n, s, s2) {#n, s, (void *)n, s2, (void *)n##_v2, NULL}
#define PT(n, s) {#n, s, (void *)n, 0, NULL, (void *)n##_ptsz}

CUresult cuGetProcAddress(const char *, void **, int, cuuint64_t);

static const entry table[] = {
    E(cuInit, 2000),
    E(cuDriverGetVersion, 2020),
    E(cuDeviceGet, 2000),
    E(cuDeviceGetCount, 2000),
    E(cuDeviceGetName, 2000),
    E(cuDeviceGetPCIBusId, 4010),
    V2(cuDeviceTotalMem, 2000, 3020),
    V2(cuDeviceGetUuid, 9020, 11040),
    E(cuDevicePrimaryCtxRetain, 7000),
    V2(cuDevicePrimaryCtxRelease, 7000, 11000),
    V2(cuDevicePrimaryCtxReset, 7000, 11000),
    E(cuDevicePrimaryCtxGetState, 7000),
    V2(cuCtxCreate, 2000, 3020),
    E(cuCtxSetCurrent, 4000),
    E(cuCtxGetCurrent, 4000),
    E(cuCtxGetDevice, 2000),
    E(cuCtxSynchronize, 2000),
    V2(cuMemGetInfo, 2000, 3020),
    V2(cuMemAlloc, 2000, 3020),
    V2(cuMemAllocPitch, 2000, 3020),
    V2(cuMemFree, 2000, 3020),
    E(cuMemAllocManaged, 6000),
    V2(cuMemAllocHost, 2000, 3020),
    E(cuMemHostAlloc, 2020),
    E(cuMemFreeHost, 2000),
    E(cuStreamCreate, 2000),
    V2(cuStreamDestroy, 2000, 4000),
    PT(cuStreamSynchronize, 2000),
    E(cuStreamWaitEvent, 2000),
    E(cuEventCreate, 2000),
    E(cuEventRecord, 2000),
    V2(cuEventDestroy, 2000, 4000),
    PT(cuMemAllocAsync, 11020),
    PT(cuMemFreeAsync, 11020),
    PT(cuMemAllocFromPoolAsync, 11020),
    E(cuDeviceGetDefaultMemPool, 11020),
    E(cuMemPoolCreate, 11020),
    E(cuMemPoolDestroy, 11020),
    E(cuMemPoolGetAttribute, 11020),
    E(cuMemPoolSetAttribute, 11020),
    E(cuMemPoolTrimTo, 11020),
    E(cuMemAddressReserve, 10020),
    E(cuMemAddressFree, 10020),
    E(cuMemCreate, 10020),
    E(cuMemRelease, 10020),
    E(cuMemMap, 10020),
    E(cuMemUnmap, 10020),
    E(cuMemSetAccess, 10020),
    E(cuMemGetAllocationGranularity, 10020),
    E(cuGetErrorString, 6000),
    E(cuGetErrorName, 6000),
    V2(cuGetProcAddress, 11030, 12000),
};

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
                                    cuuint64_t flags, CUdriverProcAddressQueryResult *status) {
    CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    if (!symbol || !pfn) return CUDA_ERROR_INVALID_VALUE;
    if (flags & ~(cuuint64_t)(CU_GET_PROC_ADDRESS_LEGACY_STREAM |
                              CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM))
        return CUDA_ERROR_INVALID_VALUE;
    *pfn = NULL;
    CUresult r = CUDA_ERROR_NOT_FOUND;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        const entry *e = &table[i];
        if (strcmp(e->name, symbol) != 0) continue;
        if (version < e->since) {
            st = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
            break;
        }
        void *fn = e->v2_since && version >= e->v2_since ? e->fn_v2 : e->fn;
        if (e->fn_ptsz && (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM)) fn = e->fn_ptsz;
        *pfn = fn;
        st = CU_GET_PROC_ADDRESS_SUCCESS;
        r = CUDA_SUCCESS;
        break;
    }
    if (status) *status = st;
    return r;
}

EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, cuuint64_t flags) {
    return cuGetProcAddress_v2(symbol, pfn, version, flags, NULL);
}
