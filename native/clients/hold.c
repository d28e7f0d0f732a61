/* hold: allocates the sizes given, one at a time, holding each, for
 * device-level readings of a process that has no shim. After each it prints
 * "held=<bytes allocated so far>" and waits for a line on stdin; at the end
 * of stdin it frees everything and exits. `--unhooked SIZE` first takes
 * SIZE by a path no interposer sees (simcudaMemAllocUnhooked): the device
 * still counts it. */
#include <unistd.h>

#include "client.h"

int main(int argc, char **argv) {
    unsigned long long held = 0;
    char line[64];
    int first = 1;
    RT(cudaFree(0)); /* the context, as frameworks make it first */
    for (int i = 1; i < argc; i++) {
        unsigned long long size;
        /* The next allocation waits for a line: the reader has read the last. */
        if (!first && !fgets(line, sizeof line, stdin)) break;
        first = 0;
        if (!strcmp(argv[i], "--unhooked") && i + 1 < argc) {
            size = parse_size("hold", argv[++i]);
            CUdeviceptr p;
            DRV(simcudaMemAllocUnhooked(&p, size));
        } else {
            size = parse_size("hold", argv[i]);
            void *p;
            RT(cudaMalloc(&p, size));
        }
        held += size;
        printf("pid=%d held=%llu\n", (int)getpid(), held);
        fflush(stdout);
    }
    while (fgets(line, sizeof line, stdin)) {
    }
    return 0;
}
