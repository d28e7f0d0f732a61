/* Stream-ordered memory pools. A pool reserves device memory in segments and
 * sub-allocates blocks first-fit; freed blocks stay reserved until a
 * synchronisation finds the pool above its release threshold (default 0) or
 * cuMemPoolTrimTo is called. So reserved - used is real fragmentation here. */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

#define POOL_MAGIC 0x504f4f4cu

typedef struct blk {
    uint64_t addr, size;
    struct blk *next;
} blk;

typedef struct seg {
    uint64_t base, size, used;
    blk *free; /* sorted by address, coalesced */
    struct seg *next;
} seg;

struct sim_pool {
    uint32_t magic;
    int device;
    uint64_t threshold;
    uint64_t reserved, used, reserved_high, used_high;
    seg *segs;
    struct sim_pool *next_all;
};

typedef struct {
    struct sim_pool *pool;
    seg *seg;
    uint64_t size;
} live_blk;

static sim_map blocks; /* address -> live_blk*, under sim_lock */
static struct sim_pool *all_pools;

struct sim_pool *sim_pool_new(int dev) {
    struct sim_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->magic = POOL_MAGIC;
    p->device = dev;
    p->next_all = all_pools;
    all_pools = p;
    return p;
}

CUmemoryPool sim_pool_handle(struct sim_pool *p) { return (CUmemoryPool)(void *)p; }

struct sim_pool *sim_pool_from_handle(CUmemoryPool h) {
    struct sim_pool *p = (struct sim_pool *)(void *)h;
    pthread_mutex_lock(&sim_lock);
    struct sim_pool *q = all_pools;
    while (q && q != p) q = q->next_all;
    pthread_mutex_unlock(&sim_lock);
    return q && q->magic == POOL_MAGIC ? q : NULL;
}

static int carve(seg *s, uint64_t size, uint64_t *out) {
    for (blk **pp = &s->free; *pp; pp = &(*pp)->next) {
        blk *b = *pp;
        if (b->size < size) continue;
        *out = b->addr;
        b->addr += size;
        b->size -= size;
        if (b->size == 0) {
            *pp = b->next;
            free(b);
        }
        s->used += size;
        return 1;
    }
    return 0;
}

static void bump_high(struct sim_pool *p) {
    if (p->reserved > p->reserved_high) p->reserved_high = p->reserved;
    if (p->used > p->used_high) p->used_high = p->used;
}

CUresult sim_pool_alloc(struct sim_pool *p, uint64_t size, CUdeviceptr *out) {
    uint64_t sz = round_up(size, SIM_POOL_ALIGN);
    live_blk *lb = malloc(sizeof *lb);
    if (!lb) return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_lock(&sim_lock);
    uint64_t addr = 0;
    seg *s = p->segs;
    while (s && !carve(s, sz, &addr)) s = s->next;
    if (!s) {
        uint64_t ssz = round_up(sz, SIM_GRANULARITY);
        if (ssz < SIM_POOL_SEGMENT) ssz = SIM_POOL_SEGMENT;
        CUresult r = sim_charge(p->device, ssz);
        uint64_t base = r == CUDA_SUCCESS ? sim_va_take(p->device, ssz) : 0;
        s = base ? calloc(1, sizeof *s) : NULL;
        blk *b = s ? malloc(sizeof *b) : NULL;
        if (!b) {
            if (base) sim_va_give(p->device, base, ssz);
            if (r == CUDA_SUCCESS) sim_uncharge(p->device, ssz);
            free(s);
            free(lb);
            pthread_mutex_unlock(&sim_lock);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        *b = (blk){base, ssz, NULL};
        *s = (seg){base, ssz, 0, b, p->segs};
        p->segs = s;
        p->reserved += ssz;
        carve(s, sz, &addr);
    }
    *lb = (live_blk){p, s, sz};
    sim_map_put(&blocks, addr, lb);
    p->used += sz;
    bump_high(p);
    pthread_mutex_unlock(&sim_lock);
    *out = addr;
    return CUDA_SUCCESS;
}

int sim_pool_owns(CUdeviceptr ptr) {
    pthread_mutex_lock(&sim_lock);
    int owns = sim_map_get(&blocks, ptr) != NULL;
    pthread_mutex_unlock(&sim_lock);
    return owns;
}

static void give_back(seg *s, uint64_t addr, uint64_t size) {
    blk *prev = NULL, *next = s->free;
    while (next && next->addr < addr) {
        prev = next;
        next = next->next;
    }
    int joins_prev = prev && prev->addr + prev->size == addr;
    int joins_next = next && addr + size == next->addr;
    if (joins_prev && joins_next) {
        prev->size += size + next->size;
        prev->next = next->next;
        free(next);
    } else if (joins_prev) {
        prev->size += size;
    } else if (joins_next) {
        next->addr = addr;
        next->size += size;
    } else {
        blk *b = malloc(sizeof *b);
        if (!b) return; /* the hole is lost to reuse; accounting stays right */
        *b = (blk){addr, size, next};
        if (prev) prev->next = b;
        else s->free = b;
    }
}

CUresult sim_pool_free(CUdeviceptr ptr) {
    pthread_mutex_lock(&sim_lock);
    live_blk *lb = sim_map_del(&blocks, ptr);
    if (!lb) {
        pthread_mutex_unlock(&sim_lock);
        return CUDA_ERROR_INVALID_VALUE;
    }
    give_back(lb->seg, ptr, lb->size);
    lb->seg->used -= lb->size;
    lb->pool->used -= lb->size;
    pthread_mutex_unlock(&sim_lock);
    free(lb);
    return CUDA_SUCCESS;
}

/* Release wholly free segments while the pool holds more than `keep`. Caller holds sim_lock. */
static void release_above(struct sim_pool *p, uint64_t keep) {
    for (seg **pp = &p->segs; *pp && p->reserved > keep;) {
        seg *s = *pp;
        if (s->used != 0) {
            pp = &s->next;
            continue;
        }
        *pp = s->next;
        p->reserved -= s->size;
        sim_uncharge(p->device, s->size);
        sim_va_give(p->device, s->base, s->size);
        while (s->free) {
            blk *b = s->free;
            s->free = b->next;
            free(b);
        }
        free(s);
    }
}

void sim_pool_trim(struct sim_pool *p, uint64_t keep) {
    pthread_mutex_lock(&sim_lock);
    release_above(p, keep);
    pthread_mutex_unlock(&sim_lock);
}

void sim_pools_sync(int dev) {
    pthread_mutex_lock(&sim_lock);
    for (struct sim_pool *p = all_pools; p; p = p->next_all)
        if (p->device == dev && p->magic == POOL_MAGIC) release_above(p, p->threshold);
    pthread_mutex_unlock(&sim_lock);
}

void sim_pool_destroy(struct sim_pool *p) {
    pthread_mutex_lock(&sim_lock);
    release_above(p, 0);
    if (sim_devices[p->device].default_pool != p) p->magic = 0;
    pthread_mutex_unlock(&sim_lock);
}

CUresult sim_pool_get_attr(struct sim_pool *p, CUmemPool_attribute attr, void *value) {
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&sim_lock);
    CUresult r = CUDA_SUCCESS;
    cuuint64_t v = 0;
    switch (attr) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES: *(int *)value = 1; break;
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: v = p->threshold; break;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT: v = p->reserved; break;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH: v = p->reserved_high; break;
    case CU_MEMPOOL_ATTR_USED_MEM_CURRENT: v = p->used; break;
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH: v = p->used_high; break;
    default: r = CUDA_ERROR_INVALID_VALUE;
    }
    if (r == CUDA_SUCCESS && attr >= CU_MEMPOOL_ATTR_RELEASE_THRESHOLD) *(cuuint64_t *)value = v;
    pthread_mutex_unlock(&sim_lock);
    return r;
}

CUresult sim_pool_set_attr(struct sim_pool *p, CUmemPool_attribute attr, void *value) {
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&sim_lock);
    CUresult r = CUDA_SUCCESS;
    cuuint64_t v = attr >= CU_MEMPOOL_ATTR_RELEASE_THRESHOLD ? *(cuuint64_t *)value : 0;
    switch (attr) {
    case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
    case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES: break;
    case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: p->threshold = v; break;
    case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH: /* only 0 resets the watermark */
        if (v) r = CUDA_ERROR_INVALID_VALUE;
        else p->reserved_high = p->reserved;
        break;
    case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
        if (v) r = CUDA_ERROR_INVALID_VALUE;
        else p->used_high = p->used;
        break;
    default: r = CUDA_ERROR_INVALID_VALUE;
    }
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuMemPoolCreate(CUmemoryPool *out, const CUmemPoolProps *props) {
    if (!out || !props) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    if (props->allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
        props->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_INVALID_VALUE;
    if (!sim_valid_device(props->location.id)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&sim_lock);
    struct sim_pool *p = sim_pool_new(props->location.id);
    pthread_mutex_unlock(&sim_lock);
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    *out = sim_pool_handle(p);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemPoolDestroy(CUmemoryPool h) {
    struct sim_pool *p = sim_pool_from_handle(h);
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    sim_pool_destroy(p);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool h, CUmemPool_attribute attr, void *value) {
    struct sim_pool *p = sim_pool_from_handle(h);
    return p ? sim_pool_get_attr(p, attr, value) : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool h, CUmemPool_attribute attr, void *value) {
    struct sim_pool *p = sim_pool_from_handle(h);
    return p ? sim_pool_set_attr(p, attr, value) : CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool h, size_t keep) {
    struct sim_pool *p = sim_pool_from_handle(h);
    if (!p) return CUDA_ERROR_INVALID_VALUE;
    sim_pool_trim(p, keep);
    return CUDA_SUCCESS;
}
