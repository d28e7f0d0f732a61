/* Timing client for kvscope's benchmarks. Runs the same work with or
 * without the shim preloaded; prints key=value figures.
 *   bench_client pairs PAIRS SIZE THREADS   cudaMalloc/cudaFree pairs per thread
 *   bench_client live COUNT SIZE            COUNT live allocations, then kvscope_dump timed
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

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "pairs")) {
        pairs = atol(argv[2]);
        size = (size_t)atol(argv[3]);
        int threads = argc > 4 ? atoi(argv[4]) : 1;
        if (threads < 1 || threads > 256) return 2;
        RT(cudaFree(NULL));
        pthread_t t[256];
        double t0 = now();
        for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
        double dt = now() - t0;
        printf("seconds=%.6f\n", dt);
        printf("pairs_per_second=%.0f\n", (double)pairs * threads / dt);
        printf("ns_per_pair=%.2f\n", dt * 1e9 / ((double)pairs * threads) * threads);
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
