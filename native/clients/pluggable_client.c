/* Drives libkvscope.so as PyTorch's CUDAPluggableAllocator does: dlopen the
 * library, look up the allocator functions by name, call init once, then
 * alloc(size, device, stream) / free(ptr, size, device, stream) from many
 * threads on their own streams, with sizes rounded as PyTorch rounds them.
 * Usage: pluggable_client LIB SCENARIO [THREADS] [PAIRS]
 *   basic      threads on their own streams; each keeps one block
 *   anomalies  a free with the wrong size, of a foreign pointer, twice
 *   fraction   set_memory_fraction caps the device
 *   record     record_stream makes the freeing stream wait for the other
 *   reset      empty_cache gives the pool's cached memory back
 *   mixed      pluggable tensors beside plain cudaMalloc (run it preloaded too)
 * Prints key=value lines; exits 1 when a check made here fails. */
#include <pthread.h>

#include "client.h"

typedef void *(*alloc_fn)(size_t, int, cudaStream_t);
typedef void (*free_fn)(void *, size_t, int, cudaStream_t);

static alloc_fn kv_alloc;
static free_fn kv_free;
static void (*kv_init)(int);
static void (*kv_reset)(void);
static void (*kv_fraction)(double, int);
static void (*kv_record)(void *, cudaStream_t);
static int (*kv_dump)(const char *);
static unsigned long long (*kv_live)(int);
static int pairs = 20000;
static int failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "check failed: " __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                                   \
            failed = 1;                                                                            \
        }                                                                                          \
    } while (0)

static void *sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "missing %s: %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

/* PyTorch rounds tensor sizes up to 512 bytes. */
static size_t round512(size_t n) { return (n + 511) & ~(size_t)511; }

static void *worker(void *arg) {
    long id = (long)arg;
    cudaStream_t s;
    RT(cudaSetDevice(0));
    RT(cudaStreamCreate(&s));
    void *ring[8] = {0};
    size_t sizes[8] = {0};
    for (int i = 0; i < pairs; i++) {
        int slot = i % 8;
        if (ring[slot]) kv_free(ring[slot], sizes[slot], 0, s);
        sizes[slot] = round512(1 + (size_t)((id * 7919 + i * 104729) % (4 * MiB)));
        ring[slot] = kv_alloc(sizes[slot], 0, s);
        CHECK(ring[slot] != NULL, "alloc of %zu failed", sizes[slot]);
    }
    for (int slot = 0; slot < 8; slot++)
        if (ring[slot]) kv_free(ring[slot], sizes[slot], 0, s);
    void *keep = kv_alloc((size_t)(id + 1) * MiB, 0, s);
    CHECK(keep != NULL, "keep alloc failed");
    return NULL;
}

static void basic(int threads) {
    pthread_t t[64];
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    /* One on the default stream, as the main thread's tensors are. */
    void *p = kv_alloc(3 * MiB, 0, NULL);
    CHECK(p != NULL, "default-stream alloc failed");
    unsigned long long bytes = 3 * MiB;
    for (int i = 0; i < threads; i++) bytes += (unsigned long long)(i + 1) * MiB;
    printf("expect.device0.live_bytes=%llu\n", bytes);
    printf("expect.device0.live_count=%d\n", threads + 1);
    printf("expect.kvscope_malloc=%llu\n", (unsigned long long)threads * (pairs + 1) + 1);
    printf("expect.kvscope_free=%llu\n", (unsigned long long)threads * pairs);
    printf("expect.streams=%d\n", threads + 1);
    printf("kvscope_live_bytes=%llu\n", kv_live(0));
}

static void anomalies(void) {
    void *p = kv_alloc(4 * MiB, 0, NULL);
    CHECK(p != NULL, "alloc failed");
    kv_free(p, 1 * MiB, 0, NULL); /* wrong size: freed all the same */
    kv_free(p, 4 * MiB, 0, NULL); /* twice: must not reach the pool */
    void *foreign;
    RT(cudaMalloc(&foreign, 2 * MiB));
    kv_free(foreign, 2 * MiB, 0, NULL); /* not the allocator's: left alone */
    RT(cudaFree(foreign));              /* still valid for its owner */
    kv_free((void *)(uintptr_t)0x7e5700000000ull, 512, 0, NULL);
    void *q = kv_alloc(1 * MiB, 0, NULL);
    CHECK(q != NULL, "alloc after anomalies failed");
    printf("expect.size_mismatched_frees=1\n");
    printf("expect.double_frees=1\n");
    printf("expect.untracked_frees=2\n");
    printf("expect.device0.live_bytes=%llu\n", 1 * MiB);
}

static void fraction(void) {
    size_t free_b, total;
    DRV(cuMemGetInfo(&free_b, &total));
    kv_fraction(0.25, 0);
    size_t cap = (size_t)(total * 0.25);
    size_t chunk = cap / 3 + 1;
    void *a = kv_alloc(chunk, 0, NULL), *b = kv_alloc(chunk, 0, NULL);
    void *c = kv_alloc(chunk, 0, NULL);
    CHECK(a && b, "allocations under the cap failed");
    CHECK(c == NULL, "allocation over the cap succeeded");
    kv_fraction(1.0, 0);
    c = kv_alloc(chunk, 0, NULL);
    CHECK(c != NULL, "allocation after lifting the cap failed");
    printf("expect.failed.kvscope_malloc=1\n");
    printf("expect.device0.live_bytes=%llu\n", 3ull * chunk);
}

static void record(void) {
    cudaStream_t s1, s2;
    RT(cudaStreamCreate(&s1));
    RT(cudaStreamCreate(&s2));
    CUstream on, waiter;
    unsigned long long before = simcudaStreamWaits(NULL, NULL);
    void *p = kv_alloc(1 * MiB, 0, s1);
    kv_free(p, 1 * MiB, 0, s1);
    CHECK(simcudaStreamWaits(NULL, NULL) == before, "a plain free waited on a stream");
    p = kv_alloc(1 * MiB, 0, s1);
    kv_record(p, s2);
    kv_record(p, s2);
    kv_free(p, 1 * MiB, 0, s1);
    unsigned long long after = simcudaStreamWaits(&on, &waiter);
    CHECK(after == before + 1, "waits %llu, expected %llu", after, before + 1);
    CHECK(on == (CUstream)s2 && waiter == (CUstream)s1, "the wrong streams waited");
    p = kv_alloc(1 * MiB, 0, s1);
    kv_free(p, 1 * MiB, 0, s1);
    CHECK(simcudaStreamWaits(NULL, NULL) == after, "a recorded stream outlived its block");
    printf("waits=%llu\n", after - before);
}

static void reset(void) {
    size_t free0, free1, free2, total;
    void *warm = kv_alloc(1 * MiB, 0, NULL); /* the context and the pool exist */
    kv_free(warm, 1 * MiB, 0, NULL);
    kv_reset();
    DRV(cuMemGetInfo(&free0, &total));
    void *p = kv_alloc(256 * MiB, 0, NULL);
    kv_free(p, 256 * MiB, 0, NULL);
    RT(cudaDeviceSynchronize());
    DRV(cuMemGetInfo(&free1, &total));
    CHECK(free0 - free1 >= 256 * MiB, "the pool did not keep the freed block cached");
    kv_reset();
    DRV(cuMemGetInfo(&free2, &total));
    CHECK(free2 == free0, "empty_cache left %zu bytes cached", free0 - free2);
    printf("cached_bytes=%zu\nafter_reset_bytes=%zu\n", free0 - free1, free0 - free2);
}

static void mixed(void) {
    void *plain;
    RT(cudaMalloc(&plain, 8 * MiB)); /* a library's workspace, outside the allocator */
    void *t = kv_alloc(16 * MiB, 0, NULL);
    CHECK(t != NULL, "alloc failed");
    /* Preloaded, the shim sees cudaMalloc too; dlopened alone, only the tensors. */
    int preloaded = dlsym(RTLD_DEFAULT, "kvscope_malloc") != NULL;
    printf("expect.device0.live_bytes=%llu\n", (preloaded ? 24 : 16) * MiB);
    printf("kvscope_live_bytes=%llu\n", kv_live(0));
    CHECK(kv_dump("mixed") == 0, "kvscope_dump failed");
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIB basic|anomalies|fraction|record|reset|mixed [THREADS] [PAIRS]\n",
                argv[0]);
        return 2;
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    kv_alloc = (alloc_fn)sym(h, "kvscope_malloc");
    kv_free = (free_fn)sym(h, "kvscope_free");
    kv_init = (void (*)(int))sym(h, "kvscope_init");
    kv_reset = (void (*)(void))sym(h, "kvscope_reset");
    kv_fraction = (void (*)(double, int))sym(h, "kvscope_memory_fraction");
    kv_record = (void (*)(void *, cudaStream_t))sym(h, "kvscope_record_stream");
    kv_dump = (int (*)(const char *))sym(h, "kvscope_dump");
    kv_live = (unsigned long long (*)(int))sym(h, "kvscope_live_bytes");
    int threads = argc > 3 ? atoi(argv[3]) : 8;
    if (argc > 4) pairs = atoi(argv[4]);
    if (threads < 1 || threads > 64) return 2;
    int count;
    RT(cudaGetDeviceCount(&count));
    kv_init(count);
    RT(cudaSetDevice(0));
    const char *s = argv[2];
    if (!strcmp(s, "basic")) basic(threads);
    else if (!strcmp(s, "anomalies")) anomalies();
    else if (!strcmp(s, "fraction")) fraction();
    else if (!strcmp(s, "record")) record();
    else if (!strcmp(s, "reset")) reset();
    else if (!strcmp(s, "mixed")) mixed();
    else {
        fprintf(stderr, "unknown scenario %s\n", s);
        return 2;
    }
    return failed;
}
