// Every way a process can end, with one live allocation: the shim must leave
// the exit status alone and write a report exactly where the README says.
// Usage: exits exit|_exit|return|abort|sigterm|throw|thread-exit
#include <pthread.h>
#include <signal.h>
#include <stdexcept>
#include <unistd.h>

#include "client.h"

static void *exit_from_thread(void *) { exit(9); }

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "";
    void *p;
    RT(cudaMalloc(&p, 32 * MiB));
    printf("allocated\n");
    fflush(stdout);
    if (!strcmp(how, "exit")) exit(7);
    if (!strcmp(how, "_exit")) _exit(5);
    if (!strcmp(how, "return")) return 3;
    if (!strcmp(how, "abort")) abort();
    if (!strcmp(how, "sigterm")) raise(SIGTERM);
    if (!strcmp(how, "throw")) throw std::runtime_error("uncaught");
    if (!strcmp(how, "thread-exit")) {
        pthread_t t;
        pthread_create(&t, NULL, exit_from_thread, NULL);
        pthread_join(t, NULL);
    }
    return 2;
}
