/* Exact accounting: one call of every hooked allocation entry point, reached
 * the ways real programs reach them (runtime, driver linked directly,
 * cudaGetDriverEntryPoint[ByVersion], cuGetProcAddress, dlsym on libcuda).
 * Prints `expect.<key>=<value>` lines: what a correct report must say.
 * Needs SIMCUDA_DEVICES=2. */
#include "client.h"

static unsigned long long live[2], peak[2], count[2], allocs[2], frees[2];
static unsigned long long managed_live, host_live;

static void up(int d, unsigned long long n) {
    live[d] += n;
    count[d]++;
    allocs[d]++;
    if (live[d] > peak[d]) peak[d] = live[d];
}
static void down(int d, unsigned long long n) {
    live[d] -= n;
    count[d]--;
    frees[d]++;
}

typedef CUresult (*alloc_fn)(CUdeviceptr *, size_t);
typedef CUresult (*free_fn)(CUdeviceptr);

static void *entry(const char *name) {
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult st;
    RT(cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &st));
    if (!fn || st != cudaDriverEntryPointSuccess) {
        fprintf(stderr, "no entry point %s\n", name);
        exit(3);
    }
    return fn;
}

int main(void) {
    void *a, *b, *c, *d, *e, *f, *g, *m, *p, *h1, *h2;
    size_t pitch;
    cudaStream_t s;

    /* runtime: plain */
    RT(cudaMalloc(&a, 3 * MiB)), up(0, 3 * MiB);
    RT(cudaMalloc(&b, 1000)), up(0, 1000);
    RT(cudaMalloc(&c, 64 * MiB)), up(0, 64 * MiB);
    RT(cudaFree(b)), down(0, 1000);
    RT(cudaFree(NULL)); /* initialises only; not a free */

    /* runtime: stream-ordered */
    RT(cudaStreamCreate(&s));
    RT(cudaMallocAsync(&d, 5 * MiB, s)), up(0, 5 * MiB);
    RT(cudaMallocAsync_ptsz(&e, 7 * MiB, NULL)), up(0, 7 * MiB);
    RT(cudaFreeAsync(d, s)), down(0, 5 * MiB);
    RT(cudaFreeAsync_ptsz(e, NULL)), down(0, 7 * MiB);
    cudaMemPool_t pool;
    RT(cudaDeviceGetDefaultMemPool(&pool, 0));
    RT(cudaMallocFromPoolAsync(&f, 9 * MiB, pool, s)), up(0, 9 * MiB);
    RT(cudaMallocFromPoolAsync_ptsz(&g, 11 * MiB, pool, s)), up(0, 11 * MiB);
    RT(cudaFreeAsync(g, s)), down(0, 11 * MiB);

    /* runtime: managed, pitched, pinned host */
    RT(cudaMallocManaged(&m, 6 * MiB, cudaMemAttachGlobal)), managed_live += 6 * MiB;
    RT(cudaMallocPitch(&p, &pitch, 1000, 100)), up(0, pitch * 100);
    struct cudaPitchedPtr p3;
    struct cudaExtent extent = {1000, 10, 4};
    RT(cudaMalloc3D(&p3, extent)), up(0, p3.pitch * 10 * 4);
    RT(cudaMallocHost(&h1, 4096)), host_live += 4096;
    RT(cudaHostAlloc(&h2, 8192, cudaHostAllocDefault)), host_live += 8192;
    RT(cudaFreeHost(h1)), host_live -= 4096;

    /* driver, linked directly (the runtime made the context current) */
    CUdeviceptr x, y, mm, pp, aa, ab, ac, ad;
    size_t pitch2;
    void *hh, *hh2;
    DRV(cuMemAlloc(&x, 10 * MiB)), up(0, 10 * MiB);
    DRV(cuMemAlloc(&y, 1 * MiB)), up(0, 1 * MiB);
    DRV(cuMemFree(y)), down(0, 1 * MiB);
    DRV(cuMemAllocManaged(&mm, 1 * MiB, CU_MEM_ATTACH_GLOBAL)), managed_live += 1 * MiB;
    DRV(cuMemAllocPitch(&pp, &pitch2, 2048, 10, 16)), up(0, pitch2 * 10);
    DRV(cuMemAllocHost(&hh, 1000)), host_live += 1000;
    DRV(cuMemHostAlloc(&hh2, 2000, 0)), host_live += 2000;
    DRV(cuMemFreeHost(hh)), host_live -= 1000;
    DRV(cuMemAllocAsync(&aa, 3 * MiB, (CUstream)s)), up(0, 3 * MiB);
    DRV(cuMemAllocAsync_ptsz(&ab, 3 * MiB, NULL)), up(0, 3 * MiB);
    DRV(cuMemFreeAsync(aa, (CUstream)s)), down(0, 3 * MiB);
    DRV(cuMemAllocFromPoolAsync(&ac, 1 * MiB, (CUmemoryPool)pool, (CUstream)s)), up(0, 1 * MiB);
    DRV(cuMemAllocFromPoolAsync_ptsz(&ad, 2 * MiB, (CUmemoryPool)pool, (CUstream)s)),
        up(0, 2 * MiB);
    DRV(cuMemFreeAsync_ptsz(ad, (CUstream)s)), down(0, 2 * MiB);

    /* virtual memory through cudaGetDriverEntryPoint: the expandable-segments pattern */
    reserve_fn reserve = (reserve_fn)entry("cuMemAddressReserve");
    create_fn create = (create_fn)entry("cuMemCreate");
    map_fn map = (map_fn)entry("cuMemMap");
    access_fn access = (access_fn)entry("cuMemSetAccess");
    unmap_fn unmap = (unmap_fn)entry("cuMemUnmap");
    release_fn release = (release_fn)entry("cuMemRelease");
    CUmemAllocationProp prop = {0};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    CUmemAccessDesc acc = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CUdeviceptr base;
    CUmemGenericAllocationHandle ph1, ph2, ph3;
    DRV(reserve(&base, 64 * MiB, 0, 0, 0));
    DRV(create(&ph1, 20 * MiB, &prop, 0)), up(0, 20 * MiB);
    DRV(create(&ph2, 4 * MiB, &prop, 0)), up(0, 4 * MiB);
    DRV(map(base, 20 * MiB, 0, ph1, 0));
    DRV(map(base + 20 * MiB, 4 * MiB, 0, ph2, 0));
    DRV(access(base, 24 * MiB, &acc, 1));
    DRV(release(ph1)); /* still mapped: the memory stays */
    DRV(unmap(base + 20 * MiB, 4 * MiB));
    DRV(release(ph2)), down(0, 4 * MiB);

    /* ... through cudaGetDriverEntryPointByVersion */
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult st;
    RT(cudaGetDriverEntryPointByVersion("cuMemCreate", &fn, 12000, cudaEnableDefault, &st));
    DRV(((create_fn)fn)(&ph3, 2 * MiB, &prop, 0)), up(0, 2 * MiB);
    RT(cudaGetDriverEntryPointByVersion("cuMemRelease", &fn, 12000, cudaEnableDefault, &st));
    DRV(((release_fn)fn)(ph3)), down(0, 2 * MiB);

    /* ... through cuGetProcAddress, and dlsym on libcuda */
    CUdeviceptr z;
    DRV(cuGetProcAddress("cuMemAlloc", &fn, 3020, CU_GET_PROC_ADDRESS_DEFAULT, NULL));
    DRV(((alloc_fn)fn)(&z, 5 * MiB)), up(0, 5 * MiB);
    void *lib = dlopen("libcuda.so.1", RTLD_NOW);
    free_fn dfree = lib ? (free_fn)dlsym(lib, "cuMemFree_v2") : NULL;
    if (!dfree) return 3;
    DRV(dfree(z)), down(0, 5 * MiB);

    /* a second device */
    void *q, *r;
    RT(cudaSetDevice(1));
    RT(cudaMalloc(&q, 100 * MiB)), up(1, 100 * MiB);
    RT(cudaMalloc(&r, 50 * MiB)), up(1, 50 * MiB);
    RT(cudaFree(r)), down(1, 50 * MiB);
    RT(cudaSetDevice(0));

    for (int dev = 0; dev < 2; dev++) {
        printf("expect.device%d.live_bytes=%llu\n", dev, live[dev]);
        printf("expect.device%d.live_count=%llu\n", dev, count[dev]);
        printf("expect.device%d.peak_bytes=%llu\n", dev, peak[dev]);
        printf("expect.device%d.allocs=%llu\n", dev, allocs[dev]);
        printf("expect.device%d.frees=%llu\n", dev, frees[dev]);
    }
    printf("expect.managed.live_bytes=%llu\n", managed_live);
    printf("expect.host.live_bytes=%llu\n", host_live);
    printf("expect.vmm.physical_bytes=%llu\n", 20 * MiB);
    printf("expect.vmm.reserved_bytes=%llu\n", 64 * MiB);
    printf("expect.vmm.mapped_bytes=%llu\n", 20 * MiB);
    printf("expect.calls.cudaMalloc=5\n");
    printf("expect.calls.cudaFree=3\n"); /* includes cudaFree(NULL) */
    printf("expect.calls.cudaMallocAsync=1\n");
    printf("expect.calls.cudaMallocAsync_ptsz=1\n");
    printf("expect.calls.cudaFreeAsync=2\n");
    printf("expect.calls.cudaFreeAsync_ptsz=1\n");
    printf("expect.calls.cudaMallocFromPoolAsync=1\n");
    printf("expect.calls.cudaMallocFromPoolAsync_ptsz=1\n");
    printf("expect.calls.cudaMallocManaged=1\n");
    printf("expect.calls.cudaMallocPitch=1\n");
    printf("expect.calls.cudaMalloc3D=1\n");
    printf("expect.calls.cudaMallocHost=1\n");
    printf("expect.calls.cudaHostAlloc=1\n");
    printf("expect.calls.cudaFreeHost=1\n");
    printf("expect.calls.cuMemAlloc_v2=3\n");
    printf("expect.calls.cuMemFree_v2=2\n");
    printf("expect.calls.cuMemAllocManaged=1\n");
    printf("expect.calls.cuMemAllocPitch_v2=1\n");
    printf("expect.calls.cuMemAllocHost_v2=1\n");
    printf("expect.calls.cuMemHostAlloc=1\n");
    printf("expect.calls.cuMemFreeHost=1\n");
    printf("expect.calls.cuMemAllocAsync=1\n");
    printf("expect.calls.cuMemAllocAsync_ptsz=1\n");
    printf("expect.calls.cuMemFreeAsync=1\n");
    printf("expect.calls.cuMemFreeAsync_ptsz=1\n");
    printf("expect.calls.cuMemAllocFromPoolAsync=1\n");
    printf("expect.calls.cuMemAllocFromPoolAsync_ptsz=1\n");
    printf("expect.calls.cuMemAddressReserve=1\n");
    printf("expect.calls.cuMemCreate=3\n");
    printf("expect.calls.cuMemMap=2\n");
    printf("expect.calls.cuMemUnmap=1\n");
    printf("expect.calls.cuMemRelease=3\n");
    (void)c, (void)f, (void)m, (void)x, (void)ab, (void)ac, (void)pp, (void)hh2, (void)h2, (void)q;
    return 0;
}
