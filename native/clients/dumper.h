/* A thread that asks the shim for a report (kvscope_dump) every `period`
 * microseconds until `dumper_stop`, then prints how many it got. For the
 * clients that check reports written while they run. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "client.h"

typedef struct {
    pthread_t thread;
    useconds_t period;
    atomic_int stop;
} dumper_t;

static void *dumper_loop(void *arg) {
    dumper_t *d = arg;
    int (*dump)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "kvscope_dump");
    int n = 0;
    while (dump && !atomic_load(&d->stop)) {
        if (dump("mid-run") == 0) n++;
        usleep(d->period);
    }
    printf("dumps=%d\n", n);
    return NULL;
}

static void dumper_start(dumper_t *d, useconds_t period) {
    d->period = period;
    atomic_store(&d->stop, 0);
    pthread_create(&d->thread, NULL, dumper_loop, d);
}

static void dumper_stop(dumper_t *d) {
    atomic_store(&d->stop, 1);
    pthread_join(d->thread, NULL);
}
