/* A caching device allocator that behaves like PyTorch's CUDACachingAllocator
 * (c10/cuda/CUDACachingAllocator.cpp), written from its documented rules for
 * kvscope's tests: what reaches CUDA (segments by cudaMalloc, or 2 MiB
 * granules mapped into one reservation with expandable segments) is what a
 * real PyTorch process makes for the same tensors. See native/README.md for
 * the rules and what is left out.
 */
#ifndef KVSCOPE_CACHING_H
#define KVSCOPE_CACHING_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_runtime_api.h"

#define CC_MIN_BLOCK (512ull)                /* kMinBlockSize: sizes round up to this */
#define CC_SMALL_SIZE (1ull << 20)           /* kSmallSize: the small pool serves up to 1 MiB */
#define CC_SMALL_BUFFER (2ull << 20)         /* kSmallBuffer: a small pool's segment */
#define CC_LARGE_BUFFER (20ull << 20)        /* kLargeBuffer: segment for 1-10 MiB requests */
#define CC_MIN_LARGE_ALLOC (10ull << 20)     /* kMinLargeAlloc: from here, own-size segments */
#define CC_ROUND_LARGE (2ull << 20)          /* kRoundLarge: those round up to 2 MiB */
#define CC_GRANULE (2ull << 20)              /* expandable segments map 2 MiB pages */

typedef struct cc_allocator cc_allocator;

typedef struct {
    uint64_t allocated;       /* memory_allocated(): sum of live blocks' (rounded) sizes */
    uint64_t reserved;        /* memory_reserved(): sum of segments (mapped bytes) */
    uint64_t requested;       /* sum of live blocks' requested sizes */
    uint64_t peak_allocated;  /* max_memory_allocated() since the last reset */
    uint64_t peak_reserved;
    uint64_t segments;        /* live segments (expandable: mapped granules) */
    uint64_t cuda_mallocs;    /* successful cudaMalloc / cuMemCreate calls */
    uint64_t cuda_frees;      /* cudaFree / cuMemRelease calls */
    uint64_t cuda_failures;   /* failed cudaMalloc / cuMemCreate calls */
    uint64_t alloc_retries;   /* num_alloc_retries: allocations retried after freeing the cache */
    uint64_t ooms;            /* num_ooms: allocations that failed after the retry */
    uint64_t released_segments; /* segments given back (empty_cache and OOM retries) */
    uint64_t released_bytes;
} cc_stats;

/* `expandable`: PyTorch's expandable_segments:True (VMM through
 * cudaGetDriverEntryPoint). */
cc_allocator *cc_create(int device, int expandable);

/* A block of at least `size` bytes for `stream`, or NULL when CUDA has no
 * memory left even after freeing the cache (PyTorch raises
 * OutOfMemoryError; cc_oom_message() has its message). */
void *cc_malloc(cc_allocator *a, size_t size, cudaStream_t stream);
void cc_free(cc_allocator *a, void *p);

/* torch.cuda.empty_cache(): give every entirely free segment of the default
 * pool back to CUDA (expandable: unmap the free granules at the end). */
void cc_empty_cache(cc_allocator *a);

/* Private pools (CUDA graph capture): while one is active, allocations come
 * from its own segments; they are kept (empty_cache skips them) until the
 * pool is released. Returns the pool's id. */
int cc_begin_private_pool(cc_allocator *a);
void cc_end_private_pool(cc_allocator *a);
/* Makes an existing private pool the active one again (a later capture into the same pool). */
void cc_use_private_pool(cc_allocator *a, int pool);
/* Bytes of the segments of one pool (0: the default pools). */
uint64_t cc_pool_reserved(const cc_allocator *a, int pool);
void cc_release_private_pool(cc_allocator *a, int pool);

cc_stats cc_get_stats(const cc_allocator *a);
void cc_reset_peak(cc_allocator *a);
/* The largest free cached block of the pool a `size` request would use. */
uint64_t cc_largest_free_block(const cc_allocator *a, size_t size, cudaStream_t stream);
/* Sizes of the live segments, largest first; returns how many (at most `n` written). */
size_t cc_segment_sizes(const cc_allocator *a, uint64_t *out, size_t n);
/* The message of the last failed cc_malloc, as PyTorch words it. */
const char *cc_oom_message(const cc_allocator *a);

/* The rules, exposed for the self-test. */
size_t cc_round_size(size_t size);
size_t cc_allocation_size(size_t size);

#endif
