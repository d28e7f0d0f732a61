/* A plug-in library, loaded with dlopen by `late`: it finds the CUDA runtime
 * on its own (dlopen + dlsym), as framework extensions do. */
#include "client.h"

/* Allocates `n` blocks of `size` bytes and frees the first; returns how many are live. */
__attribute__((visibility("default"))) int plugin_allocate(int n, size_t size) {
    void *rt = dlopen("libcudart.so.12", RTLD_NOW | RTLD_LOCAL);
    if (!rt) return -1;
    return allocate_keep_all_but_first((cudaError_t(*)(void **, size_t))dlsym(rt, "cudaMalloc"),
                                       (cudaError_t(*)(void *))dlsym(rt, "cudaFree"), n, size);
}
