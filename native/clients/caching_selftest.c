/* caching_selftest: checks of the caching allocator's rules (caching.c),
 * one `ok <name>` line each, `FAIL ...` and exit status 1 when one does not
 * hold. Run by tests/caching.rs, with and without the shim.
 */
#include <stdint.h>

#include "caching.h"
#include "client.h"

static int failed;

#define CHECK(name, cond)                                                       \
    do {                                                                        \
        if (cond) printf("ok %s\n", name);                                      \
        else {                                                                  \
            printf("FAIL %s: %s (%s:%d)\n", name, #cond, __FILE__, __LINE__); \
            failed = 1;                                                         \
        }                                                                       \
    } while (0)

#define U(p) ((uint64_t)(uintptr_t)(p))

static int selftest(void) {
    CHECK("round up to 512 B", cc_round_size(1) == 512 && cc_round_size(512) == 512 &&
                                   cc_round_size(513) == 1024);
    CHECK("small requests get 2 MiB segments",
          cc_allocation_size(1) == 2 * MiB && cc_allocation_size(MiB) == 2 * MiB);
    CHECK("1-10 MiB requests get 20 MiB segments",
          cc_allocation_size(MiB + 512) == 20 * MiB && cc_allocation_size(10 * MiB - 512) == 20 * MiB);
    CHECK("from 10 MiB an own segment rounded to 2 MiB",
          cc_allocation_size(10 * MiB) == 10 * MiB && cc_allocation_size(10 * MiB + 512) == 12 * MiB);

    cc_allocator *a = cc_create(0, 0);
    /* Small pool: 700 KiB blocks, two per 2 MiB segment. */
    void *s1 = cc_malloc(a, 700 * 1024, NULL), *s2 = cc_malloc(a, 700 * 1024, NULL);
    void *s3 = cc_malloc(a, 700 * 1024, NULL);
    cc_stats st = cc_get_stats(a);
    CHECK("two 700 KiB blocks share a small segment, the third needs another",
          U(s2) == U(s1) + 700 * 1024 && st.cuda_mallocs == 2 && st.reserved == 4 * MiB &&
              st.allocated == 3 * 700 * 1024);
    /* A small block is split when 512 B remain: the first segment has 648 KiB left. */
    void *s4 = cc_malloc(a, 2 * MiB - 1400 * 1024 - 512, NULL);
    void *s5 = cc_malloc(a, 512, NULL);
    st = cc_get_stats(a);
    CHECK("a small block is split down to 512 B",
          st.cuda_mallocs == 2 && U(s4) == U(s2) + 700 * 1024 &&
              U(s5) == U(s4) + 2 * MiB - 1400 * 1024 - 512);
    cc_free(a, s1), cc_free(a, s2), cc_free(a, s3), cc_free(a, s4), cc_free(a, s5);

    /* Large pool: 9 MiB blocks, two per 20 MiB segment, 2 MiB split off. */
    void *l1 = cc_malloc(a, 9 * MiB, NULL), *l2 = cc_malloc(a, 9 * MiB, NULL);
    st = cc_get_stats(a);
    CHECK("two 9 MiB blocks share a 20 MiB segment", U(l2) == U(l1) + 9 * MiB && st.cuda_mallocs == 3 &&
                                                         st.allocated == 18 * MiB);
    void *l3 = cc_malloc(a, 3 * MiB / 2, NULL);
    st = cc_get_stats(a);
    CHECK("a large remainder of 1 MiB or less is not split",
          U(l3) == U(l2) + 9 * MiB && st.allocated == 20 * MiB && st.cuda_mallocs == 3);
    void *l4 = cc_malloc(a, 19 * MiB, NULL);
    st = cc_get_stats(a);
    CHECK("19 MiB: an own 20 MiB segment, unsplit", st.cuda_mallocs == 4 && st.allocated == 40 * MiB);
    cc_free(a, l1), cc_free(a, l2), cc_free(a, l3), cc_free(a, l4);
    st = cc_get_stats(a);
    CHECK("freed blocks stay cached", st.allocated == 0 && st.reserved == 44 * MiB);

    /* Best fit and merging, in a fresh 20 MiB segment. */
    cc_empty_cache(a);
    st = cc_get_stats(a);
    CHECK("empty_cache gives every free segment back", st.reserved == 0 && st.segments == 0 &&
                                                          st.cuda_frees == 4);
    void *a1 = cc_malloc(a, 5 * MiB, NULL), *a2 = cc_malloc(a, 5 * MiB, NULL),
         *a3 = cc_malloc(a, 5 * MiB, NULL);
    cc_free(a, a2);
    cc_free(a, a1);
    void *b1 = cc_malloc(a, 6 * MiB, NULL);
    void *b2 = cc_malloc(a, 4 * MiB, NULL);
    st = cc_get_stats(a);
    CHECK("freed neighbours merge, the merged block is reused", U(b1) == U(a1));
    /* Free now: 4 MiB split off the merged block, and 5 MiB at the end. */
    CHECK("best fit: the smallest free block that fits", U(b2) == U(a1) + 6 * MiB);
    CHECK("no new segment while the cache fits", st.cuda_mallocs == 5);
    cc_free(a, a3), cc_free(a, b1), cc_free(a, b2);

    /* Streams: a block cached for one stream is not given to another. */
    cudaStream_t side;
    RT(cudaStreamCreate(&side));
    void *x = cc_malloc(a, 4096, side);
    cc_free(a, x);
    unsigned long long m0 = cc_get_stats(a).cuda_mallocs;
    void *y = cc_malloc(a, 4096, NULL);
    void *z = cc_malloc(a, 4096, side);
    CHECK("blocks are cached per stream", cc_get_stats(a).cuda_mallocs == m0 + 1 && U(z) == U(x));
    cc_free(a, y), cc_free(a, z);

    /* Empty cache keeps segments with a live block. */
    cc_empty_cache(a);
    void *k1 = cc_malloc(a, 4096, NULL), *k2 = cc_malloc(a, 4096, NULL);
    void *k3 = cc_malloc(a, 12 * MiB, NULL);
    cc_free(a, k2);
    cc_free(a, k3);
    cc_empty_cache(a);
    st = cc_get_stats(a);
    CHECK("empty_cache keeps a segment with a live block", st.reserved == 2 * MiB && st.segments == 1);
    cc_free(a, k1);
    cc_empty_cache(a);

    /* Out of memory: the cache is given back and the allocation retried. */
    size_t free_b, total;
    RT(cudaMemGetInfo(&free_b, &total));
    unsigned long long big = (free_b - 100 * MiB) / (2 * MiB) * (2 * MiB);
    void *p1 = cc_malloc(a, big, NULL);
    cc_free(a, p1);
    cc_stats before = cc_get_stats(a);
    void *p2 = cc_malloc(a, big + 50 * MiB, NULL);
    st = cc_get_stats(a);
    CHECK("a failed cudaMalloc frees the cached segments and succeeds on retry",
          p2 && st.cuda_failures == before.cuda_failures + 1 && st.alloc_retries == before.alloc_retries + 1 &&
              st.released_segments == before.released_segments + 1 && st.reserved == big + 50 * MiB);
    void *p3 = cc_malloc(a, big, NULL);
    st = cc_get_stats(a);
    CHECK("an allocation that fails after the retry is an OOM",
          !p3 && st.ooms == 1 && st.cuda_failures == before.cuda_failures + 3 &&
              strstr(cc_oom_message(a), "reserved by PyTorch but unallocated") != NULL);
    cc_free(a, p2);
    cc_empty_cache(a);

    /* Private pools (CUDA graphs). */
    int pool = cc_begin_private_pool(a);
    void *g1 = cc_malloc(a, 5 * MiB, NULL);
    cc_free(a, g1);
    cc_end_private_pool(a);
    void *d1 = cc_malloc(a, 5 * MiB, NULL);
    CHECK("a private pool's blocks are not used outside it", U(d1) != U(g1) && cc_get_stats(a).segments == 2);
    cc_free(a, d1);
    cc_empty_cache(a);
    CHECK("empty_cache keeps a live private pool", cc_get_stats(a).reserved == 20 * MiB);
    cc_release_private_pool(a, pool);
    cc_empty_cache(a);
    CHECK("a released private pool is given back", cc_get_stats(a).reserved == 0);

    /* Expandable segments. */
    cc_allocator *e = cc_create(0, 1);
    void *e1 = cc_malloc(e, 3 * MiB, NULL);
    st = cc_get_stats(e);
    CHECK("expandable: 3 MiB maps two 2 MiB granules", st.reserved == 4 * MiB && st.cuda_mallocs == 2);
    void *e2 = cc_malloc(e, 3 * MiB, NULL);
    st = cc_get_stats(e);
    CHECK("expandable: the next block follows, one more granule",
          U(e2) == U(e1) + 3 * MiB && st.reserved == 6 * MiB && st.cuda_mallocs == 3);
    cc_free(e, e2);
    cc_empty_cache(e);
    st = cc_get_stats(e);
    CHECK("expandable: empty_cache unmaps the free granules at the end",
          st.reserved == 4 * MiB && st.cuda_frees == 1);
    cc_free(e, e1);
    cc_empty_cache(e);
    CHECK("expandable: all unmapped when all is free", cc_get_stats(e).reserved == 0);

    printf(failed ? "selftest FAILED\n" : "selftest passed\n");
    return failed;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    return selftest();
}
