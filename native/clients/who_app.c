/* Who allocated it: an application that allocates itself (the runtime, and a
 * driver entry point taken from cuGetProcAddress) and calls a linked library
 * and a dlopen()ed one that allocate too. Prints `expect.caller.FILE=BYTES`:
 * the live bytes each file asked for. Usage: who_app */
#include "client.h"

int who_lib_allocate(int n, size_t size);

typedef CUresult (*alloc_fn)(CUdeviceptr *, size_t);

int main(void) {
    size_t app = 0;
    void *p;
    /* The application itself, through the runtime ... */
    RT(cudaMalloc(&p, 2 * MiB)), app += 2 * MiB;
    RT(cudaMalloc(&p, 1 * MiB)), RT(cudaFree(p));
    /* ... and through a driver entry point it looked up. */
    void *fn = NULL;
    CUdeviceptr d;
    DRV(cuGetProcAddress("cuMemAlloc", &fn, 3020, CU_GET_PROC_ADDRESS_DEFAULT, NULL));
    DRV(((alloc_fn)fn)(&d, 4 * MiB)), app += 4 * MiB;

    /* A library it links. */
    if (who_lib_allocate(2, 4 * MiB) != 2) return 3;

    /* A library it loads late. */
    void *h = dlopen("libwhoplug.so", RTLD_NOW | RTLD_LOCAL);
    int (*plug)(int, size_t) = h ? (int (*)(int, size_t))dlsym(h, "who_lib_allocate") : NULL;
    if (!plug || plug(1, 10 * MiB) != 1) return 3;

    printf("expect.caller.who_app=%zu\n", app);
    printf("expect.caller.libwholib.so=%zu\n", (size_t)(8 * MiB));
    printf("expect.caller.libwhoplug.so=%zu\n", (size_t)(10 * MiB));
    return 0;
}
