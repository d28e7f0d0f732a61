/* Internal state of the stand-in libcuda.so.1 (the simulated GPUs). */
#ifndef KVSCOPE_SIM_INTERNAL_H
#define KVSCOPE_SIM_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "cuda.h"

#define EXPORT __attribute__((visibility("default")))
#define SIM_MAX_DEVICES 16
#define SIM_GRANULARITY (2ull << 20)    /* accounting and VMM granularity: 2 MiB */
#define SIM_POOL_SEGMENT (32ull << 20)  /* smallest segment a pool reserves */
#define SIM_POOL_ALIGN 512ull           /* sub-allocation alignment inside pools */

static inline uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* --- open-addressing map from a 64-bit key to a pointer (sim_map.c) --- */
typedef struct {
    uint64_t *keys; /* 0 = empty, UINT64_MAX = deleted */
    void **vals;
    size_t cap, len, used;
} sim_map;
void *sim_map_get(const sim_map *m, uint64_t key);
int sim_map_put(sim_map *m, uint64_t key, void *val); /* 0 ok, -1 no memory */
void *sim_map_del(sim_map *m, uint64_t key);

typedef struct {
    uint64_t start, size;
} sim_range;

/* --- devices, contexts, pools (sim_state.c) --- */
struct sim_pool;

struct CUctx_st {
    uint32_t magic;
    int device;
};

typedef struct {
    uint64_t capacity;   /* bytes of device memory */
    uint64_t used;       /* bytes charged: context + allocations + pool reserves + VMM */
    uint64_t va_next;    /* bump pointer of the device's address range */
    uint64_t va_end;
    sim_range *free_va;  /* freed ranges below va_next, sorted, coalesced */
    size_t free_n, free_cap;
    int ctx_refcount;
    struct CUctx_st ctx;
    struct sim_pool *default_pool;
} sim_device;

extern pthread_mutex_t sim_lock; /* guards everything below and in sim_mem/sim_vmm */
extern sim_device sim_devices[SIM_MAX_DEVICES];
extern int sim_device_count;
extern uint64_t sim_context_bytes;

CUresult sim_check_init(void);
CUresult sim_current_device(int *dev); /* device of the calling thread's context */
int sim_valid_device(int dev);
/* Charge `bytes` of device memory; CUDA_ERROR_OUT_OF_MEMORY when it does not fit. */
CUresult sim_charge(int dev, uint64_t bytes);
void sim_uncharge(int dev, uint64_t bytes);
/* Per-process usage for the stand-in NVML (sim_usage.c); sim_lock held. */
void sim_publish_usage(void);
/* A device address range of `size` bytes (a multiple of the granularity). */
uint64_t sim_va_take(int dev, uint64_t size);
void sim_va_give(int dev, uint64_t addr, uint64_t size);
uint64_t sim_parse_size(const char *s, uint64_t fallback);

/* --- pools (sim_pool.c) --- */
struct CUmemPoolHandle_st;
struct sim_pool *sim_pool_new(int dev);
CUresult sim_pool_alloc(struct sim_pool *p, uint64_t size, CUdeviceptr *out);
CUresult sim_pool_free(CUdeviceptr ptr);           /* ptr must be a live pool block */
int sim_pool_owns(CUdeviceptr ptr);
void sim_pool_trim(struct sim_pool *p, uint64_t keep);
void sim_pools_sync(int dev);                       /* release above the threshold */
struct sim_pool *sim_pool_from_handle(CUmemoryPool h);
CUmemoryPool sim_pool_handle(struct sim_pool *p);
CUresult sim_pool_get_attr(struct sim_pool *p, CUmemPool_attribute attr, void *value);
CUresult sim_pool_set_attr(struct sim_pool *p, CUmemPool_attribute attr, void *value);
void sim_pool_destroy(struct sim_pool *p);

#endif
