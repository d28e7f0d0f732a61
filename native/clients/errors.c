/* Failing calls: the codes must reach the program unchanged.
 * Usage: errors oom|oom-recover|invalid|nodevice */
#include "client.h"

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "oom";
    if (!strcmp(mode, "oom")) {
        void *keep, *p;
        RT(cudaMalloc(&keep, 512 * MiB));
        size_t free_b = 0, total = 0;
        RT(cudaMemGetInfo(&free_b, &total));
        printf("cudaMalloc_huge=%d\n", (int)cudaMalloc(&p, total + GiB));
        CUdeviceptr d;
        printf("cuMemAlloc_huge=%d\n", (int)cuMemAlloc(&d, total + GiB));
        printf("cudaMallocAsync_huge=%d\n", (int)cudaMallocAsync(&p, total + GiB, NULL));
        printf("expect.failed_size=%llu\n", (unsigned long long)(total + GiB));
    } else if (!strcmp(mode, "oom-recover")) {
        /* What PyTorch's caching allocator does at an OOM: 512 MiB in use and
         * 4 x 256 MiB of cached segments; a request that does not fit fails,
         * the cache is released, a smaller retry succeeds; a second request
         * too big fails again later. */
        void *keep, *cache[4], *p, *q;
        RT(cudaMalloc(&keep, 512 * MiB));
        for (int i = 0; i < 4; i++) RT(cudaMalloc(&cache[i], 256 * MiB));
        size_t free_b = 0, total = 0;
        RT(cudaMemGetInfo(&free_b, &total));
        printf("first=%d\n", (int)cudaMalloc(&p, total));
        for (int i = 0; i < 4; i++) RT(cudaFree(cache[i]));
        RT(cudaMalloc(&p, 768 * MiB));
        printf("second=%d\n", (int)cudaMalloc(&q, total));
        RT(cudaFree(p));
        printf("expect.failed_size=%llu\n", (unsigned long long)total);
        printf("expect.live_at_failure=%llu\n", (unsigned long long)(1536 * MiB));
    } else if (!strcmp(mode, "invalid")) {
        void *p;
        size_t pitch;
        CUdeviceptr d;
        printf("managed_bad_flags=%d\n", (int)cudaMallocManaged(&p, MiB, 0));
        printf("pitch_zero_width=%d\n", (int)cudaMallocPitch(&p, &pitch, 0, 10));
        printf("cuMemAlloc_zero=%d\n", (int)cuMemAlloc(&d, 0));
        printf("cudaMalloc_null=%d\n", (int)cudaMalloc(NULL, MiB));
    } else if (!strcmp(mode, "nodevice")) {
        void *p;
        int n = -1;
        printf("cudaGetDeviceCount=%d\n", (int)cudaGetDeviceCount(&n));
        printf("cudaMalloc=%d\n", (int)cudaMalloc(&p, MiB));
        printf("cuInit=%d\n", (int)cuInit(0));
    } else {
        return 2;
    }
    return 0;
}
