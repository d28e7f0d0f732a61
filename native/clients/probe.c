/* Process-level behaviours under the shim.
 * Usage: probe fork|fork-busy [FORKS]|rtld_next|dump */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"

static atomic_int stop;

/* Keeps the shim's locks busy while the main thread forks. */
static void *busy(void *arg) {
    long id = (long)arg;
    int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "kvscope_dump");
    RT(cudaSetDevice(0));
    for (long i = 0; !atomic_load(&stop); i++) {
        void *p;
        RT(cudaMalloc(&p, 4096 + (size_t)(i % 64) * 4096));
        RT(cudaFree(p));
        if (i % 1000 == 0) mark("busy");
        if (id == 0 && dump && i % 5000 == 0) dump("busy");
    }
    return NULL;
}

/* Fork FORKS times while 8 threads allocate: every child tries CUDA (which
 * fails after fork, as with the real driver), marks, dumps, allocates host
 * memory and exits; every other child execs `probe dump` instead, which
 * starts afresh under the inherited LD_PRELOAD. A child that hangs is killed
 * by its alarm and counted. */
static int fork_busy(const char *self, int forks) {
    pthread_t t[8];
    void *keep;
    RT(cudaMalloc(&keep, 8 * MiB));
    for (long i = 0; i < 8; i++) pthread_create(&t[i], NULL, busy, (void *)i);
    int bad = 0, execs = 0;
    for (int i = 0; i < forks; i++) {
        usleep(2000);
        fflush(stdout);
        pid_t child = fork();
        if (child < 0) return 3;
        if (child == 0) {
            alarm(20);
            if (i % 2) {
                execl(self, self, "dump", (char *)NULL);
                _exit(4);
            }
            void *p;
            cudaError_t e = cudaMalloc(&p, MiB);
            mark("in the child");
            int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "kvscope_dump");
            int d = dump ? dump("child") : -1;
            char *h = malloc(1 << 20);
            memset(h, 1, 1 << 20);
            free(h);
            exit(e == cudaErrorInitializationError && d == -1 ? 0 : 5);
        }
        execs += i % 2;
        int status = 0;
        waitpid(child, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "child %d: %s %d\n", i, WIFSIGNALED(status) ? "signal" : "exit",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            bad++;
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    printf("forks=%d execs=%d failed=%d\n", forks, execs, bad);
    return bad ? 1 : 0;
}

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
    } else if (!strcmp(mode, "fork-busy")) {
        return fork_busy(argv[0], argc > 2 ? atoi(argv[2]) : 40);
    } else if (!strcmp(mode, "rtld_next")) {
        /* RTLD_NEXT must be resolved from this executable, not from the shim. */
        void *next = dlsym(RTLD_NEXT, "kvscope_mark");
        void *deflt = dlsym(RTLD_DEFAULT, "kvscope_mark");
        printf("next_found=%d same_as_default=%d\n", next != NULL, next == deflt);
    } else if (!strcmp(mode, "fail-only")) {
        /* The process's one call fails (a free of a pointer never
         * allocated): its report still lists the device. */
        printf("rc=%d\n", (int)cudaFree((void *)(uintptr_t)0xdead0000));
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
