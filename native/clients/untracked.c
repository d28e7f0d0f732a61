/* Frees the shim never saw an allocation for, and a double free. Prints the
 * codes the program got, which must not change under the shim. */
#include "client.h"

int main(void) {
    RT(cudaFree(NULL));
    CUdeviceptr raw;
    /* allocated on a path no interposer sees, freed through the runtime */
    DRV(simcudaMemAllocUnhooked(&raw, 4 * MiB));
    printf("free_unseen=%d\n", (int)cudaFree((void *)(uintptr_t)raw));
    /* a pointer nobody allocated */
    printf("free_bogus=%d\n", (int)cudaFree((void *)(uintptr_t)0xdead000000ull));
    void *p;
    RT(cudaMalloc(&p, 1 * MiB));
    printf("free_first=%d\n", (int)cudaFree(p));
    printf("free_again=%d\n", (int)cudaFree(p));
    CUdeviceptr d;
    DRV(cuMemAlloc(&d, 2 * MiB));
    printf("drv_free_first=%d\n", (int)cuMemFree(d));
    printf("drv_free_again=%d\n", (int)cuMemFree(d));
    printf("expect.untracked_frees=2\n");
    printf("expect.double_frees=2\n");
    return 0;
}
