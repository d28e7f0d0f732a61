/* Helpers shared by the test clients. */
#ifndef KVSCOPE_CLIENT_H
#define KVSCOPE_CLIENT_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cuda.h"
#include "cuda_runtime_api.h"

#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

static inline void rt_check(cudaError_t e, const char *what, const char *file, int line) {
    if (e != cudaSuccess) {
        fprintf(stderr, "%s:%d: %s -> %d (%s)\n", file, line, what, (int)e, cudaGetErrorString(e));
        exit(3);
    }
}

static inline void drv_check(CUresult r, const char *what, const char *file, int line) {
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "%s:%d: %s -> %d\n", file, line, what, (int)r);
        exit(3);
    }
}

/* Expressions, so that `RT(call), bookkeeping;` reads as one step. */
#define RT(call) rt_check((call), #call, __FILE__, __LINE__)
#define DRV(call) drv_check((call), #call, __FILE__, __LINE__)

/* The virtual-memory calls, as programs take them from
 * cudaGetDriverEntryPoint (PyTorch's expandable segments). */
typedef CUresult (*reserve_fn)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
typedef CUresult (*create_fn)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                              unsigned long long);
typedef CUresult (*map_fn)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                           unsigned long long);
typedef CUresult (*access_fn)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
typedef CUresult (*unmap_fn)(CUdeviceptr, size_t);
typedef CUresult (*release_fn)(CUmemGenericAllocationHandle);

/* A size argument: a number with an optional k/KiB, m/MiB, g/GiB suffix;
 * anything else ends `prog` with status 2. */
static inline unsigned long long parse_size(const char *prog, const char *s) {
    char *end;
    double v = strtod(s, &end);
    unsigned long long mul = 1;
    if (end == s || v < 0) goto bad;
    if (!strcasecmp(end, "k") || !strcasecmp(end, "kib")) mul = 1ull << 10;
    else if (!strcasecmp(end, "m") || !strcasecmp(end, "mib")) mul = 1ull << 20;
    else if (!strcasecmp(end, "g") || !strcasecmp(end, "gib")) mul = 1ull << 30;
    else if (*end) goto bad;
    return (unsigned long long)(v * (double)mul);
bad:
    fprintf(stderr, "%s: bad size '%s'\n", prog, s);
    exit(2);
}

/* kvscope_mark when the shim is loaded, as Python would find it with ctypes. */
static inline void mark(const char *label) {
    static void (*fn)(const char *);
    static int looked;
    if (!looked) {
        fn = (void (*)(const char *))dlsym(RTLD_DEFAULT, "kvscope_mark");
        looked = 1;
    }
    if (fn) fn(label);
}

/* Allocates `n` blocks of `size` with `m`, frees the first with `f`: the
 * blocks left live, or -1. For programs that find cudaMalloc at run time. */
static inline int allocate_keep_all_but_first(cudaError_t (*m)(void **, size_t),
                                              cudaError_t (*f)(void *), int n, size_t size) {
    if (!m || !f) return -1;
    void *first = NULL;
    for (int i = 0; i < n; i++) {
        void *p;
        if (m(&p, size) != cudaSuccess) return -1;
        if (i == 0) first = p;
    }
    return f(first) == cudaSuccess ? n - 1 : -1;
}

#endif
