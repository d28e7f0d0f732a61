/* Many threads allocating and freeing at once through the runtime, the
 * stream-ordered API and the driver. Each thread ends holding one allocation
 * of a known size. Usage: threads [THREADS] [PAIRS]. */
#include <pthread.h>

#include "client.h"

static int pairs = 100000;

static void *worker(void *arg) {
    long id = (long)arg;
    cudaStream_t s = NULL;
    RT(cudaFree(NULL)); /* this thread's context */
    for (int i = 0; i < pairs; i++) {
        size_t size = 512 + (size_t)((id * 7919 + i) % 4096) * 256;
        void *p;
        CUdeviceptr d;
        switch (i % 3) {
        case 0:
            RT(cudaMalloc(&p, size));
            RT(cudaFree(p));
            break;
        case 1:
            RT(cudaMallocAsync(&p, size, s));
            RT(cudaFreeAsync(p, s));
            break;
        default:
            DRV(cuMemAlloc(&d, size));
            DRV(cuMemFree(d));
        }
    }
    void *keep;
    RT(cudaMalloc(&keep, (size_t)(id + 1) * MiB));
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    if (argc > 2) pairs = atoi(argv[2]);
    pthread_t t[256];
    if (threads < 1 || threads > 256) return 2;
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    unsigned long long bytes = 0;
    for (int i = 0; i < threads; i++) bytes += (unsigned long long)(i + 1) * MiB;
    printf("expect.device0.live_bytes=%llu\n", bytes);
    printf("expect.device0.live_count=%d\n", threads);
    printf("expect.device0.allocs=%llu\n", (unsigned long long)threads * (pairs + 1));
    printf("expect.device0.frees=%llu\n", (unsigned long long)threads * pairs);
    return 0;
}
