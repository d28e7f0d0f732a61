/* Threads that free each other's allocations while a dumper reads the live
 * table: every free goes to a shard its thread does not own (the other side
 * of the owner-biased lock), while owners allocate into theirs. Usage:
 * crossfree [THREADS] [ROUNDS] [PER_ROUND]. Each round every thread makes
 * PER_ROUND allocations, then frees the previous thread's, allocating and
 * freeing one of its own after each. Each thread ends
 * holding one allocation of (id + 1) MiB. Prints `expect.` lines. */
#include <pthread.h>

#include "client.h"
#include "dumper.h"

enum { MAX_THREADS = 64, MAX_PER = 256 };

static int threads = 8, rounds = 200, per = 64;
static void *rows[MAX_THREADS][MAX_PER];
static pthread_barrier_t made, freed;

static void *worker(void *arg) {
    long id = (long)arg;
    RT(cudaFree(NULL)); /* this thread's context */
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < per; i++)
            RT(cudaMalloc(&rows[id][i], 512 + (size_t)((id * 131 + i * 7 + r) % 64) * 512));
        pthread_barrier_wait(&made);
        long other = (id + threads - 1) % threads;
        /* While the next thread takes from this thread's shard, this thread
         * inserts into it and takes out of it. */
        for (int i = 0; i < per; i++) {
            void *own;
            RT(cudaFree(rows[other][i]));
            RT(cudaMalloc(&own, 4096 + (size_t)i * 512));
            RT(cudaFree(own));
        }
        pthread_barrier_wait(&freed);
    }
    void *keep;
    RT(cudaMalloc(&keep, (size_t)(id + 1) * MiB));
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) threads = atoi(argv[1]);
    if (argc > 2) rounds = atoi(argv[2]);
    if (argc > 3) per = atoi(argv[3]);
    if (threads < 2 || threads > MAX_THREADS || rounds < 1 || per < 1 || per > MAX_PER) return 2;
    RT(cudaFree(NULL));
    pthread_barrier_init(&made, NULL, (unsigned)threads);
    pthread_barrier_init(&freed, NULL, (unsigned)threads);
    pthread_t t[MAX_THREADS];
    dumper_t d;
    dumper_start(&d, 5000);
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    dumper_stop(&d);
    unsigned long long live = 0;
    for (int i = 0; i < threads; i++) live += (unsigned long long)(i + 1) * MiB;
    printf("expect.device0.live_bytes=%llu\n", live);
    printf("expect.device0.live_count=%d\n", threads);
    printf("expect.device0.allocs=%llu\n",
           2ull * (unsigned long long)threads * (unsigned long long)rounds * (unsigned long long)per +
               (unsigned long long)threads);
    return 0;
}
