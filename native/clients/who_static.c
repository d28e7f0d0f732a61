/* Who allocated it, with the runtime linked statically (nvcc's default): the
 * stand-in runtime is compiled into this program, so its cudaMalloc is not
 * interposed; the shim sees the driver calls it makes through
 * cuGetProcAddress, and they belong to this program. Usage: who_static */
#include "client.h"

int main(void) {
    void *p;
    RT(cudaMalloc(&p, 6 * MiB));
    RT(cudaMalloc(&p, 1 * MiB)), RT(cudaFree(p));
    printf("expect.caller.who_static=%zu\n", (size_t)(6 * MiB));
    return 0;
}
