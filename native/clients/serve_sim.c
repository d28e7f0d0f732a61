/* serve_sim: a serving workload on the CUDA runtime, for kvscope's tests and demo.
 *
 * Loads "weights" (several large allocations), profiles activations, then
 * serves requests whose KV cache grows per token, in one of the three
 * allocation patterns seen in the field:
 *   vllm    one preallocated KV tensor per layer, num_blocks x page size,
 *           sized from free memory after a profile run (gpu_util)
 *   hf      per request, per layer K and V tensors, regrown as tokens arrive
 *   sglang  one token pool, per-layer K and V buffers, preallocated
 * with a temporary activation allocation per step, and injectable faults.
 * Marks phases with kvscope_mark when the shim is loaded. Prints what it did
 * as key=value lines (and vLLM's own log lines) for tests to compare.
 */
#include <math.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

typedef enum { VLLM, HF, SGLANG } pattern_t;

static struct {
    pattern_t pattern;
    int layers, kv_heads, head_dim, dtype_bytes, block_size;
    unsigned long long weights;
    int weight_tensors;
    int requests, concurrency, prompt, gen, max_model_len;
    double gpu_util;
    unsigned long long activation;
    unsigned long long graph_pool; /* kept after a `warmup` marker, as CUDA graphs' pools are */
    /* faults */
    unsigned long long leak, unbounded;
    int double_weights, long_context, oom_at, fragment, vmm, direct_driver;
    int step_ms, idle_ms, hf_chunk;
} o = {VLLM, 32, 8, 128, 2, 16, 16ull << 30, 0, 8, 4, 512, 128, 0, 0.9, 64ull << 20, 0,
       0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 64};

static unsigned long long weights_total, kv_bytes, kv_capacity_tokens, leaked, unbounded_total;
static int requests_done;

static void usage(void) {
    fprintf(stderr,
            "usage: serve_sim [--pattern vllm|hf|sglang] [--layers N] [--kv-heads N] [--head-dim N]\n"
            "  [--dtype-bytes N] [--block-size N] [--weights SIZE] [--weight-tensors N]\n"
            "  [--requests N] [--concurrency N] [--prompt N] [--gen N] [--max-model-len N]\n"
            "  [--gpu-util F] [--activation SIZE] [--step-ms N] [--idle-ms N] [--graph-pool SIZE]\n"
            "  faults: [--leak SIZE] [--unbounded SIZE-PER-TOKEN] [--double-weights]\n"
            "  [--long-context N] [--oom-at REQUEST] [--fragment] [--vmm] [--direct-driver]\n");
    exit(2);
}

static void parse(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && (v || (usage(), 0)) && ++i)
        if (OPT("--pattern")) {
            if (!strcmp(v, "vllm")) o.pattern = VLLM;
            else if (!strcmp(v, "hf")) o.pattern = HF;
            else if (!strcmp(v, "sglang")) o.pattern = SGLANG;
            else usage();
        } else if (OPT("--layers")) o.layers = atoi(v);
        else if (OPT("--kv-heads")) o.kv_heads = atoi(v);
        else if (OPT("--head-dim")) o.head_dim = atoi(v);
        else if (OPT("--dtype-bytes")) o.dtype_bytes = atoi(v);
        else if (OPT("--block-size")) o.block_size = atoi(v);
        else if (OPT("--weights")) o.weights = parse_size("serve_sim", v);
        else if (OPT("--weight-tensors")) o.weight_tensors = atoi(v);
        else if (OPT("--requests")) o.requests = atoi(v);
        else if (OPT("--concurrency")) o.concurrency = atoi(v);
        else if (OPT("--prompt")) o.prompt = atoi(v);
        else if (OPT("--gen")) o.gen = atoi(v);
        else if (OPT("--max-model-len")) o.max_model_len = atoi(v);
        else if (OPT("--gpu-util")) o.gpu_util = atof(v);
        else if (OPT("--activation")) o.activation = parse_size("serve_sim", v);
        else if (OPT("--graph-pool")) o.graph_pool = parse_size("serve_sim", v);
        else if (OPT("--step-ms")) o.step_ms = atoi(v);
        else if (OPT("--idle-ms")) o.idle_ms = atoi(v);
        else if (OPT("--hf-chunk")) o.hf_chunk = atoi(v);
        else if (OPT("--leak")) o.leak = parse_size("serve_sim", v);
        else if (OPT("--unbounded")) o.unbounded = parse_size("serve_sim", v);
        else if (OPT("--long-context")) o.long_context = atoi(v);
        else if (OPT("--oom-at")) o.oom_at = atoi(v);
        else if (!strcmp(a, "--double-weights")) o.double_weights = 1;
        else if (!strcmp(a, "--fragment")) o.fragment = 1;
        else if (!strcmp(a, "--vmm")) o.vmm = 1;
        else if (!strcmp(a, "--direct-driver")) o.direct_driver = 1;
        else usage();
#undef OPT
    }
    if (o.layers < 1 || o.kv_heads < 1 || o.head_dim < 1 || o.dtype_bytes < 1 || o.block_size < 1 ||
        o.requests < 0 || o.concurrency < 1 || o.prompt < 1 || o.gen < 0 || o.hf_chunk < 1 ||
        o.gpu_util <= 0 || o.gpu_util > 1)
        usage();
    if (o.weight_tensors <= 0) o.weight_tensors = o.layers * 7 + 2;
    if (o.max_model_len <= 0) o.max_model_len = o.prompt + o.gen;
}

static void nap(int ms) {
    if (ms <= 0) return;
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void died(const char *what, cudaError_t e, unsigned long long size) {
    printf("oom=%s,%llu\n", what, size);
    printf("error=%d\n", (int)e);
    printf("requests_done=%d\n", requests_done);
    fflush(stdout);
    exit(1);
}

static void *dalloc(unsigned long long size, const char *what) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, size);
    if (e != cudaSuccess) died(what, e, size);
    return p;
}

/* ---- weights ---- */
static void load_weights(void) {
    unsigned long long each = o.weights / (unsigned long long)o.weight_tensors;
    for (int copy = 0; copy < (o.double_weights ? 2 : 1); copy++) {
        for (int i = 0; i < o.weight_tensors; i++) {
            unsigned long long sz = i == o.weight_tensors - 1 ? o.weights - each * (o.weight_tensors - 1) : each;
            if (o.direct_driver) {
                CUdeviceptr d;
                CUresult r = cuMemAlloc(&d, sz);
                if (r != CUDA_SUCCESS) died("weights", (cudaError_t)r, sz);
            } else {
                dalloc(sz, "weights");
            }
            weights_total += sz;
        }
    }
}

/* ---- activations: plain, or PyTorch's expandable segments (VMM) ---- */
static struct {
    reserve_fn reserve;
    create_fn create;
    map_fn map;
    access_fn access;
    unmap_fn unmap;
    release_fn release;
    CUdeviceptr base;
    size_t span;
} vmm;

static void *entry(const char *name) {
    void *fn = NULL;
    enum cudaDriverEntryPointQueryResult st;
    RT(cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &st));
    if (!fn) exit(3);
    return fn;
}

static void vmm_init(void) {
    vmm.reserve = (reserve_fn)entry("cuMemAddressReserve");
    vmm.create = (create_fn)entry("cuMemCreate");
    vmm.map = (map_fn)entry("cuMemMap");
    vmm.access = (access_fn)entry("cuMemSetAccess");
    vmm.unmap = (unmap_fn)entry("cuMemUnmap");
    vmm.release = (release_fn)entry("cuMemRelease");
    size_t free_b, total;
    RT(cudaMemGetInfo(&free_b, &total));
    vmm.span = total; /* like PyTorch: reserve the device's size once */
    DRV(vmm.reserve(&vmm.base, vmm.span, 0, 0, 0));
}

#define SEG (20ull << 20) /* PyTorch's expandable-segment page for large pools */

static int activation_step(unsigned long long bytes) {
    if (bytes == 0) return 0;
    if (!o.vmm) {
        void *p;
        cudaError_t e = cudaMalloc(&p, bytes);
        if (e != cudaSuccess) return e;
        RT(cudaFree(p));
        return 0;
    }
    int pages = (int)((bytes + SEG - 1) / SEG);
    CUmemGenericAllocationHandle h[512];
    if (pages > 512) pages = 512;
    CUmemAllocationProp prop = {0};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    CUmemAccessDesc acc = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    for (int i = 0; i < pages; i++) {
        CUresult r = vmm.create(&h[i], SEG, &prop, 0);
        if (r != CUDA_SUCCESS) return r;
        DRV(vmm.map(vmm.base + i * SEG, SEG, 0, h[i], 0));
    }
    DRV(vmm.access(vmm.base, pages * SEG, &acc, 1));
    for (int i = 0; i < pages; i++) {
        DRV(vmm.unmap(vmm.base + i * SEG, SEG));
        DRV(vmm.release(h[i]));
    }
    return 0;
}

static void step(unsigned long long bytes) {
    int e = activation_step(bytes);
    if (e) died("activation", (cudaError_t)e, bytes);
    nap(o.step_ms);
}

/* ---- KV cache sizing ---- */
static unsigned long long kv_per_token(void) {
    return 2ull * o.layers * o.kv_heads * o.head_dim * o.dtype_bytes;
}

/* vLLM's profile: the peak of one forward pass over a full batch. */
static unsigned long long profile_peak(void) {
    unsigned long long tokens = (unsigned long long)o.prompt * o.concurrency;
    return o.activation * (1 + tokens / 2048);
}

/* Bytes for the KV cache as vLLM computes them: total * util - what the
 * process uses at the profile peak (weights, context, activations). */
static unsigned long long kv_budget(void) {
    size_t free_b, total;
    RT(cudaMemGetInfo(&free_b, &total));
    unsigned long long used = total - free_b;
    unsigned long long peak = profile_peak();
    double want = (double)total * o.gpu_util;
    if (want <= (double)(used + peak)) return 0;
    return (unsigned long long)(want - (double)(used + peak));
}

/* ---- request state for the HF pattern ---- */
typedef struct {
    int tokens, cap;
    void **k, **v;
} req_t;

static void hf_grow(req_t *r, int tokens) {
    if (tokens <= r->cap) return;
    int cap = ((tokens + o.hf_chunk - 1) / o.hf_chunk) * o.hf_chunk;
    unsigned long long per = (unsigned long long)o.kv_heads * o.head_dim * o.dtype_bytes;
    for (int l = 0; l < o.layers; l++) {
        void *nk, *nv;
        cudaError_t e = cudaMalloc(&nk, per * cap);
        if (e != cudaSuccess) died("kv_grow", e, per * cap);
        e = cudaMalloc(&nv, per * cap);
        if (e != cudaSuccess) died("kv_grow", e, per * cap);
        if (r->k[l]) RT(cudaFree(r->k[l]));
        if (r->v[l]) RT(cudaFree(r->v[l]));
        r->k[l] = nk;
        r->v[l] = nv;
    }
    r->cap = cap;
}

static void hf_free(req_t *r) {
    for (int l = 0; l < o.layers; l++) {
        if (r->k[l]) RT(cudaFree(r->k[l]));
        if (r->v[l]) RT(cudaFree(r->v[l]));
        r->k[l] = r->v[l] = NULL;
    }
    r->cap = 0;
}

/* Serves a batch of requests in lockstep; `lens` are their total tokens. */
static void serve_batch(int first_id, int n, const int *lens) {
    req_t reqs[256];
    char label[96];
    int longest = 0;
    for (int i = 0; i < n; i++) {
        reqs[i].tokens = 0;
        reqs[i].cap = 0;
        reqs[i].k = calloc((size_t)o.layers, sizeof(void *));
        reqs[i].v = calloc((size_t)o.layers, sizeof(void *));
        if (lens[i] > longest) longest = lens[i];
        snprintf(label, sizeof label, "request %d start tokens=%d", first_id + i, lens[i]);
        mark(label);
    }
    if (o.oom_at >= first_id && o.oom_at < first_id + n) {
        size_t free_b, total;
        RT(cudaMemGetInfo(&free_b, &total));
        void *p;
        cudaError_t e = cudaMalloc(&p, free_b + (1ull << 30));
        died("injected", e, free_b + (1ull << 30));
    }
    /* prefill: one step over all prompts */
    for (int i = 0; i < n; i++) {
        int t = lens[i] < o.prompt ? lens[i] : o.prompt;
        reqs[i].tokens = t;
        if (o.pattern == HF) hf_grow(&reqs[i], t);
    }
    step(o.activation * (1 + (unsigned long long)o.prompt * n / 2048));
    /* decode */
    for (int s = o.prompt; s < longest; s++) {
        for (int i = 0; i < n; i++) {
            if (reqs[i].tokens >= lens[i]) continue;
            reqs[i].tokens++;
            if (o.pattern == HF) hf_grow(&reqs[i], reqs[i].tokens);
            if (o.unbounded) {
                dalloc(o.unbounded, "unbounded_cache");
                unbounded_total += o.unbounded;
            }
        }
        step(o.activation);
    }
    for (int i = 0; i < n; i++) {
        if (o.pattern == HF) hf_free(&reqs[i]);
        free(reqs[i].k);
        free(reqs[i].v);
        if (o.leak) {
            dalloc(o.leak, "leak");
            leaked += o.leak;
        }
        requests_done++;
        snprintf(label, sizeof label, "request %d done", first_id + i);
        mark(label);
    }
}

/* Fill the device through a stream-ordered pool that keeps freed memory
 * (release threshold UINT64_MAX, as PyTorch's async backend sets it),
 * leave holes, then ask for more than any hole. */
static void fragment(void) {
    mark("fragment");
    cudaMemPool_t pool;
    RT(cudaDeviceGetDefaultMemPool(&pool, 0));
    unsigned long long keep_all = UINT64_MAX;
    RT(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
    size_t free_b, total;
    RT(cudaMemGetInfo(&free_b, &total));
    int pairs = (int)(free_b / (32ull << 20)) - 1;
    void **a = calloc((size_t)pairs, sizeof(void *));
    unsigned long long held = 0;
    for (int i = 0; i < pairs; i++) {
        void *b;
        RT(cudaMallocAsync(&a[i], 20ull << 20, NULL));
        RT(cudaMallocAsync(&b, 10ull << 20, NULL));
        held += 10ull << 20;
    }
    for (int i = 0; i < pairs; i++) RT(cudaFreeAsync(a[i], NULL));
    RT(cudaDeviceSynchronize());
    printf("fragment_holes=%d\n", pairs);
    printf("fragment_hole_bytes=%llu\n", (unsigned long long)pairs * (20ull << 20));
    printf("fragment_used_bytes=%llu\n", held);
    void *big;
    unsigned long long want = 64ull << 20;
    cudaError_t e = cudaMallocAsync(&big, want, NULL);
    if (e != cudaSuccess) died("fragmented", e, want);
    printf("fragment_fit=1\n");
}

int main(int argc, char **argv) {
    parse(argc, argv);
    printf("kv_bytes_per_token=%llu\n", kv_per_token());
    if (o.vmm) vmm_init();

    mark("load");
    load_weights();
    printf("weights_bytes=%llu\n", weights_total);

    unsigned long long page = (unsigned long long)o.block_size * kv_per_token() / (unsigned long long)o.layers;
    if (o.pattern != HF) {
        mark("profile");
        printf("profile_peak_bytes=%llu\n", profile_peak());
        step(profile_peak());
        unsigned long long budget = kv_budget();
        mark("kv_cache");
        if (o.pattern == VLLM) {
            unsigned long long blocks = budget / (page * (unsigned long long)o.layers);
            kv_capacity_tokens = blocks * (unsigned long long)o.block_size;
            for (int l = 0; l < o.layers; l++) dalloc(blocks * page, "kv_cache");
            kv_bytes = blocks * page * (unsigned long long)o.layers;
            printf("page_bytes=%llu\n", page);
            printf("num_blocks=%llu\n", blocks);
            printf("GPU KV cache size: %llu tokens\n", kv_capacity_tokens);
            printf("Maximum concurrency for %d tokens per request: %.2fx\n", o.max_model_len,
                   (double)kv_capacity_tokens / o.max_model_len);
        } else {
            unsigned long long tokens = budget / kv_per_token();
            tokens = tokens > 1 ? tokens - 1 : 0; /* one slot for padding, as SGLang keeps */
            unsigned long long per = (tokens + 1) * o.kv_heads * o.head_dim * o.dtype_bytes;
            for (int l = 0; l < 2 * o.layers; l++) dalloc(per, "kv_cache");
            kv_capacity_tokens = tokens;
            kv_bytes = per * 2ull * o.layers;
            printf("max_total_num_tokens=%llu\n", tokens);
        }
        printf("kv_capacity_tokens=%llu\n", kv_capacity_tokens);
        printf("kv_cache_bytes=%llu\n", kv_bytes);
        int need = o.long_context > o.max_model_len ? o.long_context : o.max_model_len;
        if ((unsigned long long)need > kv_capacity_tokens) {
            printf("error=max_model_len %d exceeds the KV cache capacity of %llu tokens\n", need,
                   kv_capacity_tokens);
            printf("requests_done=0\n");
            return 1;
        }
    }

    if (o.graph_pool > 0) {
        mark("warmup");
        dalloc(o.graph_pool, "graph_pool");
        printf("graph_pool_bytes=%llu\n", o.graph_pool);
    }
    mark("serve");
    int lens[256];
    int id = 0;
    while (id < o.requests) {
        int n = o.requests - id < o.concurrency ? o.requests - id : o.concurrency;
        if (n > 256) n = 256;
        for (int i = 0; i < n; i++) lens[i] = o.prompt + o.gen;
        serve_batch(id, n, lens);
        id += n;
    }
    if (o.long_context > 0) {
        lens[0] = o.long_context;
        serve_batch(id, 1, lens);
    }
    printf("requests_done=%d\n", requests_done);
    printf("leaked_bytes=%llu\n", leaked);
    printf("unbounded_bytes=%llu\n", unbounded_total);
    fflush(stdout);

    if (o.fragment) fragment();
    if (o.idle_ms > 0) {
        mark("drain");
        nap(o.idle_ms);
    }
    return 0;
}
