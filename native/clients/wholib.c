/* A library that allocates device memory itself, as cuBLAS or NCCL do beside
 * the framework: built twice, as libwholib.so (linked by who_app) and as
 * libwhoplug.so (dlopen()ed by it). Its caller is this file, not the app. */
#include "client.h"

/* Keeps `n` blocks of `size` live through cudaMalloc, plus one freed again. */
__attribute__((visibility("default"))) int who_lib_allocate(int n, size_t size) {
    void *p;
    if (cudaMalloc(&p, 1 * MiB) != cudaSuccess || cudaFree(p) != cudaSuccess) return -1;
    for (int i = 0; i < n; i++)
        if (cudaMalloc(&p, size) != cudaSuccess) return -1;
    return n;
}
