/* Process-level behaviours under the shim. Usage: probe fork|rtld_next|dump */
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "fork")) {
        void *p;
        RT(cudaMalloc(&p, 8 * MiB));
        pid_t child = fork();
        if (child == 0) {
            /* The child only exits (CUDA is unusable after fork). */
            printf("child=%d\n", (int)getpid());
            fflush(stdout);
            exit(0);
        }
        int status = 0;
        waitpid(child, &status, 0);
        RT(cudaMalloc(&p, 4 * MiB));
        printf("parent=%d child_status=%d\n", (int)getpid(), WEXITSTATUS(status));
    } else if (!strcmp(mode, "rtld_next")) {
        /* RTLD_NEXT must be resolved from this executable, not from the shim. */
        void *next = dlsym(RTLD_NEXT, "kvscope_mark");
        void *deflt = dlsym(RTLD_DEFAULT, "kvscope_mark");
        printf("next_found=%d same_as_default=%d\n", next != NULL, next == deflt);
    } else if (!strcmp(mode, "dump")) {
        void *p;
        RT(cudaMalloc(&p, 16 * MiB));
        int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "kvscope_dump");
        printf("dump=%d\n", dump ? dump("from the program") : 99);
    } else {
        return 2;
    }
    return 0;
}
