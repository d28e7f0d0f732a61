/* Virtual memory management: address reservations, physical handles and the
 * mappings between them. Physical memory is charged at cuMemCreate and given
 * back when the handle is released and no mapping holds it any more. */
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

#define VMM_VA_BASE 0x600000000000ull
#define VMM_VA_END 0x700000000000ull

typedef struct {
    uint64_t size;
    int device;
    int released;
    uint64_t maps;
} phys;

typedef struct {
    uint64_t start, size, handle; /* handle is 0 for reservations */
} range;

typedef struct {
    range *v;
    size_t n, cap;
} ranges; /* sorted by start, non-overlapping */

static ranges reserved, mapped;
static sim_map handles; /* handle -> phys* */
static uint64_t next_handle = 0x1000;
static uint64_t va_next = VMM_VA_BASE;

/* Index of the first range whose end is above `addr`. */
static size_t lower(const ranges *r, uint64_t addr) {
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->v[mid].start + r->v[mid].size <= addr) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int overlaps(const ranges *r, uint64_t start, uint64_t size) {
    size_t i = lower(r, start);
    return i < r->n && r->v[i].start < start + size;
}

static int insert(ranges *r, range x) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        range *v = realloc(r->v, cap * sizeof *v);
        if (!v) return -1;
        r->v = v;
        r->cap = cap;
    }
    size_t i = lower(r, x.start);
    memmove(&r->v[i + 1], &r->v[i], (r->n - i) * sizeof *r->v);
    r->v[i] = x;
    r->n++;
    return 0;
}

static void remove_at(ranges *r, size_t i) {
    memmove(&r->v[i], &r->v[i + 1], (r->n - i - 1) * sizeof *r->v);
    r->n--;
}

/* Is [start, start+size) wholly inside one range of r? */
static int contained(const ranges *r, uint64_t start, uint64_t size) {
    size_t i = lower(r, start);
    return i < r->n && r->v[i].start <= start && start + size <= r->v[i].start + r->v[i].size;
}

static CUresult check_prop(const CUmemAllocationProp *prop) {
    if (!prop || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
        prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
        return CUDA_ERROR_INVALID_VALUE;
    if (!sim_valid_device(prop->location.id)) return CUDA_ERROR_INVALID_DEVICE;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *prop,
                                              CUmemAllocationGranularity_flags option) {
    if (!g || option > CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    r = check_prop(prop);
    if (r) return r;
    *g = SIM_GRANULARITY;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
                                    CUdeviceptr addr, unsigned long long flags) {
    (void)addr; /* a hint only, as for the real driver */
    if (!ptr || size == 0 || size % SIM_GRANULARITY || flags) return CUDA_ERROR_INVALID_VALUE;
    if (alignment & (alignment - 1)) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    uint64_t align = alignment > SIM_GRANULARITY ? alignment : SIM_GRANULARITY;
    pthread_mutex_lock(&sim_lock);
    uint64_t start = round_up(va_next, align);
    if (start + size > VMM_VA_END || insert(&reserved, (range){start, size, 0}) != 0) {
        r = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
        va_next = start + size;
        *ptr = start;
    }
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) {
    CUresult r = sim_check_init();
    if (r) return r;
    pthread_mutex_lock(&sim_lock);
    size_t i = lower(&reserved, ptr);
    if (i >= reserved.n || reserved.v[i].start != ptr || reserved.v[i].size != size ||
        overlaps(&mapped, ptr, size)) {
        r = CUDA_ERROR_INVALID_VALUE;
    } else {
        remove_at(&reserved, i);
    }
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                            const CUmemAllocationProp *prop, unsigned long long flags) {
    if (!handle || size == 0 || size % SIM_GRANULARITY || flags) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    r = check_prop(prop);
    if (r) return r;
    phys *p = malloc(sizeof *p);
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    *p = (phys){size, prop->location.id, 0, 0};
    pthread_mutex_lock(&sim_lock);
    r = sim_charge(p->device, size);
    uint64_t h = next_handle++;
    if (r == CUDA_SUCCESS && sim_map_put(&handles, h, p) != 0) {
        sim_uncharge(p->device, size);
        r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    pthread_mutex_unlock(&sim_lock);
    if (r) {
        free(p);
        return r;
    }
    *handle = h;
    return CUDA_SUCCESS;
}

/* Caller holds sim_lock. */
static void maybe_destroy(uint64_t h, phys *p) {
    if (!p->released || p->maps) return;
    sim_map_del(&handles, h);
    sim_uncharge(p->device, p->size);
    free(p);
}

EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle h) {
    CUresult r = sim_check_init();
    if (r) return r;
    pthread_mutex_lock(&sim_lock);
    phys *p = sim_map_get(&handles, h);
    if (!p || p->released) {
        r = CUDA_ERROR_INVALID_VALUE;
    } else {
        p->released = 1;
        maybe_destroy(h, p);
    }
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                         CUmemGenericAllocationHandle h, unsigned long long flags) {
    if (size == 0 || flags || size % SIM_GRANULARITY || offset % SIM_GRANULARITY ||
        ptr % SIM_GRANULARITY)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    pthread_mutex_lock(&sim_lock);
    phys *p = sim_map_get(&handles, h);
    if (!p || p->released || offset + size > p->size || !contained(&reserved, ptr, size) ||
        overlaps(&mapped, ptr, size)) {
        r = CUDA_ERROR_INVALID_VALUE;
    } else if (insert(&mapped, (range){ptr, size, h}) != 0) {
        r = CUDA_ERROR_OUT_OF_MEMORY;
    } else {
        p->maps++;
    }
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) {
    if (size == 0) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    pthread_mutex_lock(&sim_lock);
    /* The range must consist of whole mappings, back to back. */
    size_t i = lower(&mapped, ptr), j = i;
    uint64_t at = ptr;
    while (j < mapped.n && mapped.v[j].start == at && at < ptr + size) {
        at += mapped.v[j].size;
        j++;
    }
    if (j == i || at != ptr + size) {
        r = CUDA_ERROR_INVALID_VALUE;
    } else {
        for (size_t k = i; k < j; k++) {
            uint64_t h = mapped.v[i].handle;
            remove_at(&mapped, i);
            phys *p = sim_map_get(&handles, h);
            if (p) {
                p->maps--;
                maybe_destroy(h, p);
            }
        }
    }
    pthread_mutex_unlock(&sim_lock);
    return r;
}

EXPORT CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc,
                               size_t count) {
    if (!desc || count == 0 || size == 0) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = sim_check_init();
    if (r) return r;
    for (size_t k = 0; k < count; k++)
        if (desc[k].location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
            !sim_valid_device(desc[k].location.id))
            return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&sim_lock);
    size_t i = lower(&mapped, ptr);
    uint64_t at = ptr;
    while (i < mapped.n && mapped.v[i].start <= at && at < ptr + size) {
        at = mapped.v[i].start + mapped.v[i].size;
        i++;
    }
    if (at < ptr + size) r = CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_unlock(&sim_lock);
    return r;
}
