/* signals: how a process under the shim dies by a signal.
 * Usage: signals wait|own|own-late|query|fork|dumps|dumps-only|idle-exit
 *   wait       allocate, print "ready", wait for a signal
 *   own        its own SIGTERM handler (set before CUDA) prints and exits 7
 *   own-late   the same, set with signal() after CUDA is in use
 *   query      print the SIGTERM disposition the program sees after CUDA
 *   fork       a forked child (CUDA unusable there) prints "ready" and waits
 *   dumps      a thread writes reports in a loop while waiting
 *   dumps-only the same, back to back, with the stop signals blocked on the
 *              main thread: the dumping thread is the one that takes them
 *   idle-exit  allocate, stay still 1.5 s, _exit(0): no exit handler runs
 *   pluggable LIB       libkvscope.so dlopened as PyTorch's allocator, not preloaded
 *   pluggable-own LIB   the same, with the program's own SIGTERM handler set after */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"

static void own_handler(int sig) {
    static const char msg[] = "own handler\n";
    (void)sig;
    (void)!write(1, msg, sizeof msg - 1);
    _exit(7);
}

static void *dumper(void *arg) {
    int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "kvscope_dump");
    int pause_between = arg == NULL; /* dumps-only: back to back */
    for (;;) {
        if (dump) dump("busy");
        if (pause_between) usleep(1000);
    }
    return NULL;
}

static void ready(void) {
    printf("ready\n");
    fflush(stdout);
}

/* The shim as PyTorch's pluggable allocator: dlopen it (RTLD_LOCAL: its
 * sigaction does not interpose), allocate through kvscope_malloc. */
static int pluggable(const char *lib, int own) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    void *(*kv_alloc)(size_t, int, void *) = (void *(*)(size_t, int, void *))dlsym(h, "kvscope_malloc");
    if (!kv_alloc || !kv_alloc(16 * MiB, 0, NULL)) return 3;
    if (own) {
        struct sigaction a;
        memset(&a, 0, sizeof a);
        a.sa_handler = own_handler;
        sigaction(SIGTERM, &a, NULL);
    }
    ready();
    for (;;) pause();
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: signals wait|own|own-late|query|fork|dumps|dumps-only|idle-exit|pluggable LIB|pluggable-own LIB\n");
        return 2;
    }
    const char *mode = argv[1];
    void *p;
    if (!strcmp(mode, "pluggable") || !strcmp(mode, "pluggable-own"))
        return pluggable(argc > 2 ? argv[2] : "libkvscope.so", !strcmp(mode, "pluggable-own"));
    if (!strcmp(mode, "own")) {
        struct sigaction a;
        memset(&a, 0, sizeof a);
        a.sa_handler = own_handler;
        sigaction(SIGTERM, &a, NULL);
    }
    RT(cudaMalloc(&p, 16 * MiB));
    if (!strcmp(mode, "own-late")) signal(SIGTERM, own_handler);
    if (!strcmp(mode, "query")) {
        struct sigaction old;
        sigaction(SIGTERM, NULL, &old);
        printf("sigterm=%s\n", old.sa_handler == SIG_DFL ? "default" : "handled");
        printf("signal_returns=%s\n", signal(SIGHUP, SIG_IGN) == SIG_DFL ? "default" : "other");
        printf("after_ignore=%s\n", signal(SIGHUP, SIG_DFL) == SIG_IGN ? "ignored" : "other");
        return 0;
    }
    if (!strcmp(mode, "idle-exit")) {
        printf("expect.live_bytes=%llu\n", 16 * MiB);
        fflush(stdout);
        usleep(1500 * 1000);
        _exit(0);
    }
    if (!strcmp(mode, "fork")) {
        pid_t c = fork();
        if (c == 0) {
            ready();
            for (;;) pause();
        }
        int status;
        waitpid(c, &status, 0);
        printf("child=%s%d\n", WIFSIGNALED(status) ? "signal " : "exit ",
               WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        return 0;
    }
    if (!strcmp(mode, "dumps") || !strcmp(mode, "dumps-only")) {
        pthread_t t;
        int only = !strcmp(mode, "dumps-only");
        pthread_create(&t, NULL, dumper, only ? &only : NULL);
        usleep(50 * 1000);
        if (only) {
            sigset_t stop;
            sigemptyset(&stop);
            sigaddset(&stop, SIGTERM);
            sigaddset(&stop, SIGINT);
            sigaddset(&stop, SIGHUP);
            pthread_sigmask(SIG_BLOCK, &stop, NULL);
        }
    }
    ready();
    for (;;) pause();
}
