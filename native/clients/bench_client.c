/* Timing client for kvscope's benchmarks. Runs the same work with or
 * without the shim preloaded; prints key=value figures.
 *   bench_client pairs PAIRS SIZE THREADS   cudaMalloc/cudaFree pairs per thread
 *   bench_client live COUNT SIZE            COUNT live allocations, then kvscope_dump timed
 *   bench_client async PAIRS SIZE THREADS [LIB]
 *       stream-ordered pairs per thread on its own stream: cuMemAllocFromPoolAsync /
 *       cuMemFreeAsync on a pool that keeps freed memory cached (what
 *       kvscope's allocator does inside, and PyTorch's cudaMallocAsync
 *       backend through the runtime), or with LIB kvscope_malloc /
 *       kvscope_free from that library (the pluggable allocator)
 */
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "client.h"

static long pairs;
static size_t size;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
    (void)arg;
    RT(cudaFree(NULL)); /* context on this thread, outside the timed loop */
    void *p;
    for (long i = 0; i < pairs; i++) {
        RT(cudaMalloc(&p, size));
        RT(cudaFree(p));
    }
    return NULL;
}

static void *(*plug_alloc)(size_t, int, cudaStream_t);
static void (*plug_free)(void *, size_t, int, cudaStream_t);

static CUmemoryPool bench_pool;

static void *async_worker(void *arg) {
    (void)arg;
    cudaStream_t s;
    RT(cudaSetDevice(0));
    RT(cudaStreamCreate(&s));
    void *p;
    for (long i = 0; i < pairs; i++) {
        if (plug_alloc) {
            p = plug_alloc(size, 0, s);
            if (!p) exit(3);
            plug_free(p, size, 0, s);
        } else {
            CUdeviceptr d;
            DRV(cuMemAllocFromPoolAsync(&d, size, bench_pool, (CUstream)s));
            DRV(cuMemFreeAsync(d, (CUstream)s));
        }
    }
    return NULL;
}

static void timed_threads(int threads, void *(*fn)(void *)) {
    pthread_t t[256];
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, fn, NULL);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double dt = now() - t0;
    printf("seconds=%.6f\n", dt);
    printf("pairs_per_second=%.0f\n", (double)pairs * threads / dt);
    printf("ns_per_pair=%.2f\n", dt * 1e9 / ((double)pairs * threads) * threads);
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "pairs")) {
        pairs = atol(argv[2]);
        size = (size_t)atol(argv[3]);
        int threads = argc > 4 ? atoi(argv[4]) : 1;
        if (threads < 1 || threads > 256) return 2;
        RT(cudaFree(NULL));
        timed_threads(threads, worker);
    } else if (!strcmp(mode, "async")) {
        pairs = atol(argv[2]);
        size = (size_t)atol(argv[3]);
        int threads = argc > 4 ? atoi(argv[4]) : 1;
        if (threads < 1 || threads > 256) return 2;
        RT(cudaFree(NULL));
        if (argc > 5) {
            void *h = dlopen(argv[5], RTLD_NOW | RTLD_LOCAL);
            if (!h) return 2;
            plug_alloc = (void *(*)(size_t, int, cudaStream_t))dlsym(h, "kvscope_malloc");
            plug_free = (void (*)(void *, size_t, int, cudaStream_t))dlsym(h, "kvscope_free");
            if (!plug_alloc || !plug_free) return 2;
            /* Warm: the pool exists before the clock starts, as after PyTorch's first tensor. */
            plug_free(plug_alloc(size, 0, NULL), size, 0, NULL);
        } else {
            CUmemPoolProps props;
            memset(&props, 0, sizeof props);
            props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
            props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
            props.location.id = 0;
            cuuint64_t keep = UINT64_MAX;
            DRV(cuMemPoolCreate(&bench_pool, &props));
            DRV(cuMemPoolSetAttribute(bench_pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep));
        }
        timed_threads(threads, async_worker);
    } else if (!strcmp(mode, "live")) {
        long n = atol(argv[2]);
        size = (size_t)atol(argv[3]);
        void *p;
        double t0 = now();
        for (long i = 0; i < n; i++) RT(cudaMalloc(&p, size));
        printf("alloc_seconds=%.3f\n", now() - t0);
        int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "kvscope_dump");
        if (dump) {
            double t1 = now();
            int rc = dump("bench");
            printf("dump_rc=%d\n", rc);
            printf("dump_seconds=%.3f\n", now() - t1);
        }
    } else {
        return 2;
    }
    return 0;
}
