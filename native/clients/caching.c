/* A caching allocator with the rules of PyTorch's CUDACachingAllocator,
 * written from its documented behaviour (no code of PyTorch's here):
 *
 * - sizes round up to 512 B;
 * - requests up to 1 MiB come from the small pool, whose segments are 2 MiB;
 *   larger ones from the large pool: 20 MiB segments for 1-10 MiB, an own
 *   segment rounded up to 2 MiB from 10 MiB on;
 * - a free block is taken best-fit (smallest that fits, then lowest address)
 *   among the blocks cached for the same stream and pool; it is split when
 *   the rest is worth keeping: >= 512 B in the small pool, > 1 MiB in the
 *   large one (>= 512 B everywhere with expandable segments);
 * - a freed block merges with free neighbours of its segment and stays
 *   cached; CUDA is asked for a new segment only when nothing cached fits;
 * - when CUDA says out of memory, every entirely free segment is given back
 *   (cudaFree) and the allocation is tried once more;
 * - empty_cache gives back every entirely free segment;
 * - allocated = sum of live blocks, reserved = sum of segments.
 *
 * Expandable segments: one reservation per stream and pool
 * (cuMemAddressReserve), grown at its end by 2 MiB granules (cuMemCreate,
 * cuMemMap, then one cuMemSetAccess over the new range), the driver calls
 * taken from cudaGetDriverEntryPoint as PyTorch takes them.
 *
 * Single-threaded: the simulators call it from one thread.
 */
#include "caching.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

typedef CUresult (*addr_free_fn)(CUdeviceptr, size_t);

typedef struct segment segment;

typedef struct block {
    uint64_t ptr, size, requested;
    int allocated;
    segment *seg;
    struct block *prev, *next; /* neighbours in the segment, by address */
} block;

struct segment {
    uint64_t base, size; /* expandable: size is what is mapped */
    cudaStream_t stream;
    int pool; /* 0: the default pools; > 0: a private pool */
    int small;
    int expandable;
    uint64_t span; /* expandable: the reservation */
    CUmemGenericAllocationHandle *handles; /* expandable: one per mapped granule */
    size_t cap_handles;
    block *head;
    segment *next;
};

#define MAX_POOLS 64

struct cc_allocator {
    int device, expandable;
    segment *segs;
    int active_pool, next_pool;
    unsigned char pool_dead[MAX_POOLS];
    cc_stats st;
    char oom[512];
    struct {
        reserve_fn reserve;
        create_fn create;
        map_fn map;
        access_fn access;
        unmap_fn unmap;
        release_fn release;
        addr_free_fn addr_free;
    } vmm;
};

size_t cc_round_size(size_t size) {
    if (size < CC_MIN_BLOCK) return CC_MIN_BLOCK;
    return (size + CC_MIN_BLOCK - 1) / CC_MIN_BLOCK * CC_MIN_BLOCK;
}

size_t cc_allocation_size(size_t size) {
    if (size <= CC_SMALL_SIZE) return CC_SMALL_BUFFER;
    if (size < CC_MIN_LARGE_ALLOC) return CC_LARGE_BUFFER;
    return (size + CC_ROUND_LARGE - 1) / CC_ROUND_LARGE * CC_ROUND_LARGE;
}

static void *entry(const char *name) {
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult st;
    RT(cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &st));
    if (!fn) {
        fprintf(stderr, "caching: no driver entry point %s\n", name);
        exit(3);
    }
    return fn;
}

cc_allocator *cc_create(int device, int expandable) {
    cc_allocator *a = calloc(1, sizeof *a);
    if (!a) exit(3);
    a->device = device;
    a->expandable = expandable;
    a->next_pool = 1;
    if (expandable) {
        a->vmm.reserve = (reserve_fn)entry("cuMemAddressReserve");
        a->vmm.create = (create_fn)entry("cuMemCreate");
        a->vmm.map = (map_fn)entry("cuMemMap");
        a->vmm.access = (access_fn)entry("cuMemSetAccess");
        a->vmm.unmap = (unmap_fn)entry("cuMemUnmap");
        a->vmm.release = (release_fn)entry("cuMemRelease");
        a->vmm.addr_free = (addr_free_fn)entry("cuMemAddressFree");
    }
    return a;
}

static void account_reserved(cc_allocator *a, int64_t delta) {
    a->st.reserved = (uint64_t)((int64_t)a->st.reserved + delta);
    if (a->st.reserved > a->st.peak_reserved) a->st.peak_reserved = a->st.reserved;
}

static int releasable_pool(const cc_allocator *a, int pool) {
    return pool == 0 || (pool < MAX_POOLS && a->pool_dead[pool]);
}

/* Best fit among the free blocks cached for this stream, pool and size class. */
static block *find_free(const cc_allocator *a, size_t size, int small, cudaStream_t stream,
                        int pool) {
    block *best = NULL;
    for (segment *s = a->segs; s; s = s->next) {
        if (s->small != small || s->stream != stream || s->pool != pool) continue;
        for (block *b = s->head; b; b = b->next) {
            if (b->allocated || b->size < size) continue;
            if (!best || b->size < best->size || (b->size == best->size && b->ptr < best->ptr))
                best = b;
        }
    }
    return best;
}

static block *new_block(segment *s, uint64_t ptr, uint64_t size) {
    block *b = calloc(1, sizeof *b);
    if (!b) exit(3);
    b->ptr = ptr;
    b->size = size;
    b->seg = s;
    return b;
}

static segment *new_segment(cc_allocator *a, uint64_t base, uint64_t size, int small,
                            cudaStream_t stream) {
    segment *s = calloc(1, sizeof *s);
    if (!s) exit(3);
    s->base = base;
    s->size = size;
    s->small = small;
    s->stream = stream;
    s->pool = a->active_pool;
    s->next = a->segs;
    a->segs = s;
    return s;
}

/* A new cudaMalloc segment holding one free block: the block, or NULL. */
static block *alloc_segment(cc_allocator *a, size_t alloc_size, int small, cudaStream_t stream) {
    void *p = NULL;
    if (cudaMalloc(&p, alloc_size) != cudaSuccess) {
        a->st.cuda_failures++;
        return NULL;
    }
    a->st.cuda_mallocs++;
    a->st.segments++;
    account_reserved(a, (int64_t)alloc_size);
    segment *s = new_segment(a, (uint64_t)(uintptr_t)p, alloc_size, small, stream);
    s->head = new_block(s, s->base, alloc_size);
    return s->head;
}

/* ---- expandable segments ---- */

static segment *expandable_of(cc_allocator *a, int small, cudaStream_t stream) {
    for (segment *s = a->segs; s; s = s->next)
        if (s->expandable && s->small == small && s->stream == stream && s->pool == a->active_pool)
            return s;
    size_t free_b, total;
    RT(cudaMemGetInfo(&free_b, &total));
    /* Like PyTorch: room for the whole device and an eighth more. */
    uint64_t span = ((uint64_t)total + total / 8 + CC_GRANULE - 1) / CC_GRANULE * CC_GRANULE;
    CUdeviceptr base;
    DRV(a->vmm.reserve(&base, span, 0, 0, 0));
    segment *s = new_segment(a, base, 0, small, stream);
    s->expandable = 1;
    s->span = span;
    return s;
}

static block *tail_of(segment *s) {
    block *b = s->head;
    while (b && b->next) b = b->next;
    return b;
}

/* Maps granules at the end of `s` until a free block of `size` ends it. */
static block *grow_expandable(cc_allocator *a, size_t size, int small, cudaStream_t stream) {
    segment *s = expandable_of(a, small, stream);
    block *tail = tail_of(s);
    uint64_t have = tail && !tail->allocated ? tail->size : 0;
    uint64_t need = (size - have + CC_GRANULE - 1) / CC_GRANULE * CC_GRANULE;
    size_t n = (size_t)(need / CC_GRANULE), first = (size_t)(s->size / CC_GRANULE);
    if (s->size + need > s->span) return NULL;
    if (first + n > s->cap_handles) {
        size_t cap = (first + n) * 2;
        CUmemGenericAllocationHandle *h = realloc(s->handles, cap * sizeof *h);
        if (!h) exit(3);
        s->handles = h;
        s->cap_handles = cap;
    }
    CUmemAllocationProp prop = {0};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = a->device;
    for (size_t i = 0; i < n; i++) {
        if (a->vmm.create(&s->handles[first + i], CC_GRANULE, &prop, 0) != CUDA_SUCCESS) {
            /* As PyTorch: the handles made for this growth go back at once. */
            a->st.cuda_failures++;
            for (size_t j = 0; j < i; j++) DRV(a->vmm.release(s->handles[first + j]));
            a->st.cuda_frees += i;
            return NULL;
        }
        a->st.cuda_mallocs++;
    }
    for (size_t i = 0; i < n; i++)
        DRV(a->vmm.map(s->base + (first + i) * CC_GRANULE, CC_GRANULE, 0, s->handles[first + i], 0));
    CUmemAccessDesc acc = {{CU_MEM_LOCATION_TYPE_DEVICE, a->device}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    DRV(a->vmm.access(s->base + first * CC_GRANULE, need, &acc, 1));
    a->st.segments += n;
    account_reserved(a, (int64_t)need);
    uint64_t end = s->base + s->size;
    s->size += need;
    if (have) {
        tail->size += need;
        return tail;
    }
    block *b = new_block(s, end, need);
    if (tail) {
        tail->next = b;
        b->prev = tail;
    } else {
        s->head = b;
    }
    return b;
}

/* Unmaps the whole granules of a free tail. Returns the bytes given back. */
static uint64_t shrink_expandable(cc_allocator *a, segment *s) {
    block *tail = tail_of(s);
    if (!tail || tail->allocated) return 0;
    uint64_t from = (tail->ptr - s->base + CC_GRANULE - 1) / CC_GRANULE;
    uint64_t to = s->size / CC_GRANULE;
    if (from >= to) return 0;
    for (uint64_t k = from; k < to; k++) {
        DRV(a->vmm.unmap(s->base + k * CC_GRANULE, CC_GRANULE));
        DRV(a->vmm.release(s->handles[k]));
    }
    uint64_t bytes = (to - from) * CC_GRANULE;
    s->size -= bytes;
    a->st.cuda_frees += to - from;
    a->st.segments -= to - from;
    a->st.released_segments += to - from;
    a->st.released_bytes += bytes;
    account_reserved(a, -(int64_t)bytes);
    tail->size -= bytes;
    if (tail->size == 0) {
        if (tail->prev) tail->prev->next = NULL;
        else s->head = NULL;
        free(tail);
    }
    return bytes;
}

/* ---- release ---- */

/* Gives back every entirely free segment of the pools that may release:
 * what PyTorch's release_cached_blocks does (empty_cache, OOM retry). */
static uint64_t release_cached(cc_allocator *a) {
    RT(cudaDeviceSynchronize());
    uint64_t bytes = 0;
    segment **p = &a->segs;
    while (*p) {
        segment *s = *p;
        if (!releasable_pool(a, s->pool)) {
            p = &s->next;
            continue;
        }
        if (s->expandable) {
            bytes += shrink_expandable(a, s);
            p = &s->next;
            continue;
        }
        block *b = s->head;
        if (b->allocated || b->next) {
            p = &s->next;
            continue;
        }
        RT(cudaFree((void *)(uintptr_t)s->base));
        a->st.cuda_frees++;
        a->st.segments--;
        a->st.released_segments++;
        a->st.released_bytes += s->size;
        bytes += s->size;
        account_reserved(a, -(int64_t)s->size);
        *p = s->next;
        free(b);
        free(s);
    }
    return bytes;
}

void cc_empty_cache(cc_allocator *a) { release_cached(a); }

/* ---- allocate and free ---- */

static block *get_block(cc_allocator *a, size_t size, size_t alloc_size, int small,
                        cudaStream_t stream) {
    return a->expandable ? grow_expandable(a, size, small, stream)
                         : alloc_segment(a, alloc_size, small, stream);
}

static const char *human(uint64_t n, char *buf, size_t len) {
    if (n <= 1024) snprintf(buf, len, "%llu bytes", (unsigned long long)n);
    else if (n <= 1048576) snprintf(buf, len, "%.2f KiB", n / 1024.0);
    else if (n <= 1073741824) snprintf(buf, len, "%.2f MiB", n / 1048576.0);
    else snprintf(buf, len, "%.2f GiB", n / 1073741824.0);
    return buf;
}

void *cc_malloc(cc_allocator *a, size_t req, cudaStream_t stream) {
    if (req == 0) return NULL;
    size_t size = cc_round_size(req);
    int small = size <= CC_SMALL_SIZE;
    size_t alloc_size = cc_allocation_size(size);
    block *b = find_free(a, size, small, stream, a->active_pool);
    if (!b) {
        b = get_block(a, size, alloc_size, small, stream);
        if (!b) {
            /* Out of memory: give the cache back and try once more. */
            release_cached(a);
            a->st.alloc_retries++;
            b = get_block(a, size, alloc_size, small, stream);
        }
        if (!b) {
            a->st.ooms++;
            size_t free_b = 0, total = 0;
            RT(cudaMemGetInfo(&free_b, &total));
            char s1[32], s2[32], s3[32], s4[32], s5[32];
            snprintf(a->oom, sizeof a->oom,
                     "CUDA out of memory. Tried to allocate %s. GPU %d has a total capacity of %s "
                     "of which %s is free. Of the allocated memory %s is allocated by PyTorch, and "
                     "%s is reserved by PyTorch but unallocated.",
                     human(a->expandable ? size : alloc_size, s1, sizeof s1), a->device,
                     human(total, s2, sizeof s2), human(free_b, s3, sizeof s3),
                     human(a->st.allocated, s4, sizeof s4),
                     human(a->st.reserved - a->st.allocated, s5, sizeof s5));
            return NULL;
        }
    }
    uint64_t remaining = b->size - size;
    int split = (small || a->expandable) ? remaining >= CC_MIN_BLOCK : remaining > CC_SMALL_SIZE;
    if (split) {
        block *r = new_block(b->seg, b->ptr + size, remaining);
        r->next = b->next;
        r->prev = b;
        if (b->next) b->next->prev = r;
        b->next = r;
        b->size = size;
    }
    b->allocated = 1;
    b->requested = req;
    a->st.allocated += b->size;
    a->st.requested += req;
    if (a->st.allocated > a->st.peak_allocated) a->st.peak_allocated = a->st.allocated;
    return (void *)(uintptr_t)b->ptr;
}

static block *find_allocated(const cc_allocator *a, uint64_t ptr) {
    for (segment *s = a->segs; s; s = s->next) {
        if (ptr < s->base || ptr >= s->base + s->size) continue;
        for (block *b = s->head; b; b = b->next)
            if (b->ptr == ptr && b->allocated) return b;
    }
    return NULL;
}

void cc_free(cc_allocator *a, void *p) {
    if (!p) return;
    block *b = find_allocated(a, (uint64_t)(uintptr_t)p);
    if (!b) {
        fprintf(stderr, "caching: free of %p, not a live block\n", p);
        exit(3);
    }
    b->allocated = 0;
    a->st.allocated -= b->size;
    a->st.requested -= b->requested;
    b->requested = 0;
    /* Merge with free neighbours. */
    block *n = b->next;
    if (n && !n->allocated) {
        b->size += n->size;
        b->next = n->next;
        if (n->next) n->next->prev = b;
        free(n);
    }
    block *pv = b->prev;
    if (pv && !pv->allocated) {
        pv->size += b->size;
        pv->next = b->next;
        if (b->next) b->next->prev = pv;
        free(b);
    }
}

/* ---- private pools ---- */

int cc_begin_private_pool(cc_allocator *a) {
    if (a->next_pool >= MAX_POOLS) exit(3);
    a->active_pool = a->next_pool++;
    return a->active_pool;
}

void cc_end_private_pool(cc_allocator *a) { a->active_pool = 0; }

void cc_use_private_pool(cc_allocator *a, int pool) {
    if (pool > 0 && pool < a->next_pool && !a->pool_dead[pool]) a->active_pool = pool;
}

uint64_t cc_pool_reserved(const cc_allocator *a, int pool) {
    uint64_t n = 0;
    for (segment *s = a->segs; s; s = s->next)
        if (s->pool == pool) n += s->size;
    return n;
}

void cc_release_private_pool(cc_allocator *a, int pool) {
    if (pool > 0 && pool < MAX_POOLS) a->pool_dead[pool] = 1;
}

/* ---- figures ---- */

cc_stats cc_get_stats(const cc_allocator *a) { return a->st; }

void cc_reset_peak(cc_allocator *a) {
    a->st.peak_allocated = a->st.allocated;
    a->st.peak_reserved = a->st.reserved;
}

uint64_t cc_largest_free_block(const cc_allocator *a, size_t size, cudaStream_t stream) {
    int small = cc_round_size(size) <= CC_SMALL_SIZE;
    uint64_t best = 0;
    for (segment *s = a->segs; s; s = s->next) {
        if (s->small != small || s->stream != stream || s->pool != a->active_pool) continue;
        for (block *b = s->head; b; b = b->next)
            if (!b->allocated && b->size > best) best = b->size;
    }
    return best;
}

static int by_size_desc(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

size_t cc_segment_sizes(const cc_allocator *a, uint64_t *out, size_t n) {
    size_t k = 0;
    for (segment *s = a->segs; s; s = s->next) {
        if (s->expandable || k >= n) continue;
        out[k++] = s->size;
    }
    qsort(out, k, sizeof *out, by_size_desc);
    return k;
}

const char *cc_oom_message(const cc_allocator *a) { return a->oom; }
