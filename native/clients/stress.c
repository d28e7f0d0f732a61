/* Many threads through every hooked entry point at once, frees from other
 * threads, and reports dumped while it runs. Usage: stress [THREADS] [OPS]
 * (OPS alloc/free pairs per thread). Prints `expect.` lines for the report. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "client.h"
#include "dumper.h"

enum { KINDS = 13, SLOTS = 4 };

typedef void *(*plug_alloc_fn)(size_t, int, cudaStream_t);
typedef void (*plug_free_fn)(void *, size_t, int, cudaStream_t);

static int threads = 64, ops = 15625;
static create_fn vmm_create;
static release_fn vmm_release;
static plug_alloc_fn plug_alloc;
static plug_free_fn plug_free;
static cudaMemPool_t pool;
static atomic_ullong device_allocs, host_allocs, managed_allocs, vmm_creates;
static pthread_barrier_t handoff_ready;
static void *handoff[256];

typedef struct {
    int kind;
    uintptr_t p;
    size_t size;
} slot;

static void release(slot *s, cudaStream_t st) {
    switch (s->kind) {
    case 0: case 4: case 5: RT(cudaFree((void *)s->p)); break;
    case 1: case 3: RT(cudaFreeAsync((void *)s->p, st)); break;
    case 2: RT(cudaFreeAsync_ptsz((void *)s->p, st)); break;
    case 6: case 7: RT(cudaFreeHost((void *)s->p)); break;
    case 8: DRV(cuMemFree((CUdeviceptr)s->p)); break;
    case 9: DRV(cuMemFreeAsync((CUdeviceptr)s->p, (CUstream)st)); break;
    case 10: DRV(cuMemFreeAsync_ptsz((CUdeviceptr)s->p, (CUstream)st)); break;
    case 11: DRV(vmm_release((CUmemGenericAllocationHandle)s->p)); break;
    case 12: plug_free((void *)s->p, s->size, 0, st); break;
    }
    s->p = 0;
}

static void acquire(slot *s, int kind, size_t size, cudaStream_t st) {
    void *p = NULL;
    CUdeviceptr d = 0;
    size_t pitch;
    CUmemAllocationProp prop = {0};
    s->kind = kind;
    s->size = size;
    switch (kind) {
    case 0: RT(cudaMalloc(&p, size)); break;
    case 1: RT(cudaMallocAsync(&p, size, st)); break;
    case 2: RT(cudaMallocAsync_ptsz(&p, size, st)); break;
    case 3: RT(cudaMallocFromPoolAsync(&p, size, pool, st)); break;
    case 4: RT(cudaMallocManaged(&p, size, cudaMemAttachGlobal)); atomic_fetch_add(&managed_allocs, 1); break;
    case 5: RT(cudaMallocPitch(&p, &pitch, size / 4, 4)); break;
    case 6: RT(cudaMallocHost(&p, size)); atomic_fetch_add(&host_allocs, 1); break;
    case 7: RT(cudaHostAlloc(&p, size, cudaHostAllocDefault)); atomic_fetch_add(&host_allocs, 1); break;
    case 8: DRV(cuMemAlloc(&d, size)); break;
    case 9: DRV(cuMemAllocAsync(&d, size, (CUstream)st)); break;
    case 10: DRV(cuMemAllocFromPoolAsync_ptsz(&d, size, (CUmemoryPool)pool, (CUstream)st)); break;
    case 11: {
        CUmemGenericAllocationHandle h;
        prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        DRV(vmm_create(&h, 2 * MiB, &prop, 0));
        d = (CUdeviceptr)h;
        atomic_fetch_add(&vmm_creates, 1);
        break;
    }
    case 12:
        p = plug_alloc(size, 0, st);
        if (!p) {
            fprintf(stderr, "kvscope_malloc failed\n");
            exit(3);
        }
        break;
    }
    if (kind != 4 && kind != 6 && kind != 7 && kind != 11) atomic_fetch_add(&device_allocs, 1);
    s->p = p ? (uintptr_t)p : (uintptr_t)d;
}

static void *worker(void *arg) {
    long id = (long)arg;
    cudaStream_t st;
    RT(cudaSetDevice(0));
    RT(cudaStreamCreate(&st));
    slot ring[SLOTS] = {{0}};
    int kinds = plug_alloc ? KINDS : KINDS - 1;
    for (int i = 0; i < ops; i++) {
        slot *s = &ring[i % SLOTS];
        if (s->p) release(s, st);
        acquire(s, (int)((i + id) % kinds), 4096 + (size_t)((i * 7 + id) % 64) * 4096, st);
    }
    for (int i = 0; i < SLOTS; i++)
        if (ring[i].p) release(&ring[i], st);
    /* One allocation kept, one handed to the next thread to free. */
    void *keep, *give, *host;
    RT(cudaMalloc(&keep, (size_t)(id + 1) * 65536));
    RT(cudaMalloc(&give, 12345));
    RT(cudaMallocHost(&host, (size_t)(id + 1) * 4096));
    atomic_fetch_add(&device_allocs, 2);
    atomic_fetch_add(&host_allocs, 1);
    handoff[id] = give;
    pthread_barrier_wait(&handoff_ready);
    RT(cudaFree(handoff[(id + 1) % threads]));
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) threads = atoi(argv[1]);
    if (argc > 2) ops = atoi(argv[2]);
    if (threads < 2 || threads > 256 || ops < 1) return 2;
    RT(cudaFree(NULL));
    RT(cudaDeviceGetDefaultMemPool(&pool, 0));
    void *fn;
    enum cudaDriverEntryPointQueryResult q;
    RT(cudaGetDriverEntryPoint("cuMemCreate", &fn, cudaEnableDefault, &q));
    vmm_create = (create_fn)fn;
    RT(cudaGetDriverEntryPoint("cuMemRelease", &fn, cudaEnableDefault, &q));
    vmm_release = (release_fn)fn;
    plug_alloc = (plug_alloc_fn)dlsym(RTLD_DEFAULT, "kvscope_malloc");
    plug_free = (plug_free_fn)dlsym(RTLD_DEFAULT, "kvscope_free");
    pthread_barrier_init(&handoff_ready, NULL, (unsigned)threads);
    pthread_t t[256];
    dumper_t d;
    dumper_start(&d, 20000);
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    dumper_stop(&d);
    unsigned long long dev = 0, host = 0;
    for (int i = 0; i < threads; i++) {
        dev += (unsigned long long)(i + 1) * 65536;
        host += (unsigned long long)(i + 1) * 4096;
    }
    printf("expect.device0.live_bytes=%llu\n", dev);
    printf("expect.device0.live_count=%d\n", threads);
    printf("expect.device0.allocs=%llu\n", atomic_load(&device_allocs) + atomic_load(&vmm_creates));
    printf("expect.host.live_bytes=%llu\n", host);
    printf("expect.host.allocs=%llu\n", atomic_load(&host_allocs));
    printf("expect.managed.allocs=%llu\n", atomic_load(&managed_allocs));
    printf("expect.pairs=%llu\n", (unsigned long long)threads * (unsigned long long)ops);
    return 0;
}
