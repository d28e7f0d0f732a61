/* A plug-in library, loaded with dlopen by `late`: it finds the CUDA runtime
 * on its own (dlopen + dlsym), as framework extensions do. */
#include "client.h"

typedef cudaError_t (*malloc_fn)(void **, size_t);
typedef cudaError_t (*free_fn)(void *);

/* Allocates `n` blocks of `size` bytes and frees the first; returns how many are live. */
__attribute__((visibility("default"))) int plugin_allocate(int n, size_t size) {
    void *rt = dlopen("libcudart.so.12", RTLD_NOW | RTLD_LOCAL);
    if (!rt) return -1;
    malloc_fn m = (malloc_fn)dlsym(rt, "cudaMalloc");
    free_fn f = (free_fn)dlsym(rt, "cudaFree");
    if (!m || !f) return -1;
    void *first = NULL;
    for (int i = 0; i < n; i++) {
        void *p;
        if (m(&p, size) != cudaSuccess) return -1;
        if (i == 0) first = p;
    }
    return f(first) == cudaSuccess ? n - 1 : -1;
}
