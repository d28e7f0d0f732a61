/* caching_sim: LLM serving whose tensors all go through a PyTorch-like
 * caching allocator (caching.c), so that what CUDA sees is segments, as in a
 * real PyTorch process: they grow with the first requests and with every
 * request larger than all before, then stay flat.
 *
 * Scenarios (--scenario):
 *   healthy        HF generate: per request, prefill then decode steps of an
 *                  eager Llama (activations, a KV cache regrown by cat), all
 *                  freed at the end of the request
 *   warmup         healthy + a workspace made in the first request and kept
 *                  (cuBLAS's, in PyTorch)
 *   leak           healthy + --leak bytes kept per request (default 64 MiB)
 *   unbounded      healthy + --unbounded bytes kept per decoded token
 *                  (default 256 KiB)
 *   fragmentation  healthy requests, then 9 MiB tensors (two per 20 MiB
 *                  segment) until the device is full, every other one freed,
 *                  and a --frag-request (40 MiB) that cannot fit: OOM with
 *                  memory reserved but unallocated
 *   vllm           vLLM's lifecycle: weights, a profile run at the largest
 *                  batch then empty_cache, a KV cache sized from what is
 *                  left, CUDA graphs captured into a private pool, a warm-up,
 *                  then requests served from cached blocks
 *
 * With --counters it reports the allocator's counters through
 * kvscope_framework_counters at every marker (before the marker), and with
 * --counters-every-step also after every decode step: what the Python helper
 * does for PyTorch. Prints `at allocated=A reserved=R segments=S label=L` at
 * every marker and `expect.<key>=<n>` lines for the tests.
 */
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "caching.h"
#include "client.h"

/* ---- options ---- */

typedef struct {
    const char *name;
    int layers, hidden, inter, heads, kv_heads, head_dim, vocab;
} shape_t;

static const shape_t TINY = {"tiny", 4, 512, 1376, 8, 2, 64, 32000};
static const shape_t LLAMA8B = {"llama-3.1-8b", 32, 4096, 14336, 32, 8, 128, 128256};

static struct {
    const char *scenario;
    shape_t shape;
    int shape_set;
    int tokens[256], n_tokens;
    int batch, gen;
    unsigned long long leak, unbounded, workspace;
    int counters, every_step, expandable, phase_ms;
    unsigned long long frag_tensor, frag_request;
    int frag_after;
    double gpu_util;
    int max_batched_tokens, max_seqs, block_size;
} o = {"healthy", {0}, 0, {192, 320, 448, 576, 192, 320, 448, 576, 576, 320}, 10, 4, 64, 0, 0,
       0, 0, 0, 0, 0, 9ull << 20, 40ull << 20, 2, 0.9, 8192, 256, 16};

static cc_allocator *A;
static const int DT = 2; /* fp16 / bf16 */

static void usage(void) {
    fprintf(stderr,
            "usage: caching_sim [--scenario healthy|warmup|leak|unbounded|fragmentation|vllm]\n"
            "  [--shape tiny|llama-3.1-8b] [--tokens T,T,...] [--batch N] [--gen N]\n"
            "  [--leak SIZE] [--unbounded SIZE-PER-TOKEN] [--workspace SIZE]\n"
            "  [--counters] [--counters-every-step] [--expandable] [--phase-ms N]\n"
            "  [--frag-tensor SIZE] [--frag-request SIZE] [--frag-after N]\n"
            "  [--gpu-util F] [--max-batched-tokens N] [--max-seqs N] [--block-size N]\n");
    exit(2);
}

static void parse(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && (v || (usage(), 0)) && ++i)
        if (OPT("--scenario")) o.scenario = v;
        else if (OPT("--shape")) {
            if (!strcmp(v, "tiny")) o.shape = TINY;
            else if (!strcmp(v, "llama-3.1-8b")) o.shape = LLAMA8B;
            else usage();
            o.shape_set = 1;
        } else if (OPT("--tokens")) {
            o.n_tokens = 0;
            for (const char *p = v; *p && o.n_tokens < 256;) {
                o.tokens[o.n_tokens++] = atoi(p);
                p = strchr(p, ',');
                if (!p) break;
                p++;
            }
        } else if (OPT("--batch")) o.batch = atoi(v);
        else if (OPT("--gen")) o.gen = atoi(v);
        else if (OPT("--leak")) o.leak = parse_size("caching_sim", v);
        else if (OPT("--unbounded")) o.unbounded = parse_size("caching_sim", v);
        else if (OPT("--workspace")) o.workspace = parse_size("caching_sim", v);
        else if (OPT("--phase-ms")) o.phase_ms = atoi(v);
        else if (OPT("--frag-tensor")) o.frag_tensor = parse_size("caching_sim", v);
        else if (OPT("--frag-request")) o.frag_request = parse_size("caching_sim", v);
        else if (OPT("--frag-after")) o.frag_after = atoi(v);
        else if (OPT("--gpu-util")) o.gpu_util = atof(v);
        else if (OPT("--max-batched-tokens")) o.max_batched_tokens = atoi(v);
        else if (OPT("--max-seqs")) o.max_seqs = atoi(v);
        else if (OPT("--block-size")) o.block_size = atoi(v);
        else if (!strcmp(a, "--counters")) o.counters = 1;
        else if (!strcmp(a, "--counters-every-step")) o.counters = o.every_step = 1;
        else if (!strcmp(a, "--expandable")) o.expandable = 1;
        else usage();
#undef OPT
    }
    if (!o.shape_set) o.shape = strcmp(o.scenario, "vllm") ? TINY : LLAMA8B;
    if (!strcmp(o.scenario, "leak") && !o.leak) o.leak = 64ull << 20;
    if (!strcmp(o.scenario, "unbounded") && !o.unbounded) o.unbounded = 256ull << 10;
    if (!strcmp(o.scenario, "warmup") && !o.workspace) o.workspace = 32ull << 20;
    if (o.batch < 1 || o.gen < 0 || o.n_tokens < 1 || o.gpu_util <= 0 || o.gpu_util > 1 ||
        o.max_batched_tokens < 1 || o.max_seqs < 1 || o.block_size < 1)
        usage();
    for (int i = 0; i < o.n_tokens; i++)
        if (o.tokens[i] <= o.gen) usage();
}

static void nap(int ms) {
    if (ms <= 0) return;
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ---- the framework's counters and markers ---- */

static void counters(void) {
    static void (*fn)(int, uint64_t, uint64_t);
    static int looked;
    if (!o.counters) return;
    if (!looked) {
        fn = (void (*)(int, uint64_t, uint64_t))dlsym(RTLD_DEFAULT, "kvscope_framework_counters");
        looked = 1;
    }
    cc_stats s = cc_get_stats(A);
    if (fn) fn(0, s.allocated, s.reserved);
}

/* A marker, with the counters first (as the Python helper's mark() does). */
static void at(const char *label) {
    counters();
    mark(label);
    cc_stats s = cc_get_stats(A);
    printf("at allocated=%llu reserved=%llu segments=%llu label=%s\n",
           (unsigned long long)s.allocated, (unsigned long long)s.reserved,
           (unsigned long long)s.segments, label);
}

static void expect(const char *key, unsigned long long v) { printf("expect.%s=%llu\n", key, v); }

/* PyTorch raises OutOfMemoryError; the counters the program reported last
 * stay what kvscope knows (no marker, no new counters here). */
static void died(const char *what, unsigned long long size) {
    cc_stats s = cc_get_stats(A);
    printf("torch.OutOfMemoryError: %s\n", cc_oom_message(A));
    printf("oom=%s,%llu\n", what, size);
    expect("oom_allocated", s.allocated);
    expect("oom_reserved", s.reserved);
    expect("oom_unallocated", s.reserved - s.allocated);
    fflush(stdout);
    exit(1);
}

static void *T(unsigned long long bytes, const char *what) {
    void *p = cc_malloc(A, bytes, NULL);
    if (!p) died(what, bytes);
    return p;
}

#define F(p) cc_free(A, p)

/* ---- weights ---- */

static unsigned long long weights_bytes;

static void weight(unsigned long long elems) {
    T(elems * DT, "weights");
    weights_bytes += elems * DT;
}

/* In state-dict order; vLLM fuses q/k/v and gate/up. */
static void load_weights(int fused) {
    const shape_t *s = &o.shape;
    unsigned long long H = s->hidden, I = s->inter, q = (unsigned long long)s->heads * s->head_dim,
                       kv = (unsigned long long)s->kv_heads * s->head_dim;
    weight((unsigned long long)s->vocab * H);
    for (int l = 0; l < s->layers; l++) {
        weight(H);
        if (fused) weight((q + 2 * kv) * H);
        else weight(q * H), weight(kv * H), weight(kv * H);
        weight(q * H);
        weight(H);
        if (fused) weight(2 * I * H);
        else weight(I * H), weight(I * H);
        weight(I * H);
    }
    weight(H);
    weight((unsigned long long)s->vocab * H);
}

/* ---- an eager Llama forward, HF style ---- */

typedef struct {
    void **k, **v;
} kv_t;

static int workspace_made;
static unsigned long long workspace_kept, unbounded_kept, leaked_kept;

/* One forward of `S` new tokens for `B` sequences of `t` tokens in all. */
static void hf_forward(kv_t *c, unsigned long long B, unsigned long long S, unsigned long long t) {
    const shape_t *s = &o.shape;
    unsigned long long H = s->hidden, I = s->inter, q = (unsigned long long)s->heads * s->head_dim,
                       kv = (unsigned long long)s->kv_heads * s->head_dim, R = B * S;
    void *h = T(R * H * DT, "activation");
    for (int l = 0; l < s->layers; l++) {
        void *n1 = T(R * H * DT, "activation");
        if (o.workspace && !workspace_made) {
            T(o.workspace, "workspace"); /* the first matmul makes it; never freed */
            workspace_made = 1;
            workspace_kept = o.workspace;
        }
        void *qp = T(R * q * DT, "activation"), *kp = T(R * kv * DT, "activation"),
             *vp = T(R * kv * DT, "activation");
        void *qr = T(R * q * DT, "activation"), *kr = T(R * kv * DT, "activation");
        F(qp);
        F(kp);
        /* The cache: torch.cat of the old one and the new keys. */
        void *nk = T(B * t * kv * DT, "kv"), *nv = T(B * t * kv * DT, "kv");
        F(c->k[l]);
        F(c->v[l]);
        c->k[l] = nk;
        c->v[l] = nv;
        F(kr);
        F(vp);
        void *sc = T(B * s->heads * S * t * 4, "activation"); /* scores in fp32 */
        void *pr = T(B * s->heads * S * t * DT, "activation");
        F(sc);
        void *at_ = T(R * q * DT, "activation");
        F(pr);
        F(qr);
        void *op = T(R * H * DT, "activation");
        F(at_);
        void *h2 = T(R * H * DT, "activation");
        F(op);
        F(n1);
        F(h);
        h = h2;
        void *n2 = T(R * H * DT, "activation");
        void *g = T(R * I * DT, "activation"), *u = T(R * I * DT, "activation");
        void *act = T(R * I * DT, "activation");
        F(g);
        F(u);
        void *d = T(R * H * DT, "activation");
        F(act);
        F(n2);
        void *h3 = T(R * H * DT, "activation");
        F(d);
        F(h);
        h = h3;
    }
    void *fn = T(R * H * DT, "activation");
    F(h);
    /* Logits of the last token of each sequence (generate's logits_to_keep), then in fp32. */
    void *lg = T(B * s->vocab * DT, "activation");
    F(fn);
    void *lf = T(B * s->vocab * 4, "activation");
    F(lg);
    void *next = T(B * s->vocab * 4, "activation"), *tok = T(B * 8, "activation");
    F(lf);
    F(next);
    F(tok);
}

static void counters_step(void) {
    if (o.every_step) counters();
}

static void hf_request(int id, int tokens) {
    char label[96];
    int prompt = tokens - o.gen;
    kv_t c;
    c.k = calloc((size_t)o.shape.layers, sizeof(void *));
    c.v = calloc((size_t)o.shape.layers, sizeof(void *));
    snprintf(label, sizeof label, "request %d start tokens=%d", id, tokens);
    at(label);
    void *ids = T((unsigned long long)o.batch * prompt * 8, "input_ids");
    hf_forward(&c, o.batch, prompt, prompt);
    counters_step();
    for (int s = 1; s <= o.gen; s++) {
        hf_forward(&c, o.batch, 1, prompt + s);
        if (o.unbounded) {
            T(o.unbounded, "unbounded"); /* a per-token cache, never evicted */
            unbounded_kept += o.unbounded;
        }
        counters_step();
    }
    F(ids);
    for (int l = 0; l < o.shape.layers; l++) {
        F(c.k[l]);
        F(c.v[l]);
    }
    free(c.k);
    free(c.v);
    if (o.leak) {
        T(o.leak, "leak"); /* kept past the request */
        leaked_kept += o.leak;
    }
    snprintf(label, sizeof label, "request %d done", id);
    at(label);
    nap(o.phase_ms);
}

static void load_phase(int fused) {
    at("load");
    load_weights(fused);
    cc_stats s = cc_get_stats(A);
    expect("weights_bytes", weights_bytes);
    expect("weights_allocated", s.allocated);
    expect("weights_reserved", s.reserved);
    expect("weights_segments", s.segments);
    nap(o.phase_ms);
}

static void finish(void) {
    cc_stats s = cc_get_stats(A);
    expect("requests", (unsigned long long)o.n_tokens);
    expect("workspace_bytes", workspace_kept);
    expect("leaked_bytes", leaked_kept);
    expect("unbounded_bytes", unbounded_kept);
    expect("allocated", s.allocated);
    expect("reserved", s.reserved);
    expect("peak_reserved", s.peak_reserved);
    expect("segments", s.segments);
    expect("cuda_mallocs", s.cuda_mallocs);
    expect("cuda_frees", s.cuda_frees);
    expect("cuda_failures", s.cuda_failures);
    expect("alloc_retries", s.alloc_retries);
    uint64_t sizes[4096];
    size_t n = cc_segment_sizes(A, sizes, 4096);
    printf("segment_sizes=");
    for (size_t i = 0; i < n; i++) printf("%s%llu", i ? "," : "", (unsigned long long)sizes[i]);
    printf("\n");
}

static int serve_hf(void) {
    load_phase(0);
    at("serve");
    nap(o.phase_ms);
    for (int i = 0; i < o.n_tokens; i++) hf_request(i, o.tokens[i]);
    finish();
    return 0;
}

/* ---- fragmentation ---- */

static int fragmentation(void) {
    load_phase(0);
    at("serve");
    for (int i = 0; i < o.frag_after && i < o.n_tokens; i++) hf_request(i, o.tokens[i]);
    at("fragment");
    size_t cap = 1 << 16, n = 0;
    void **t = calloc(cap, sizeof *t);
    unsigned long long seg = cc_allocation_size(cc_round_size(o.frag_tensor));
    for (;;) {
        size_t free_b, total;
        RT(cudaMemGetInfo(&free_b, &total));
        if (cc_largest_free_block(A, o.frag_tensor, NULL) < cc_round_size(o.frag_tensor) &&
            free_b < seg)
            break;
        if (n == cap) break;
        t[n++] = T(o.frag_tensor, "fragment");
    }
    counters_step();
    unsigned long long freed = 0;
    for (size_t i = 1; i < n; i += 2) {
        F(t[i]);
        freed++;
    }
    counters_step();
    cc_stats s = cc_get_stats(A);
    expect("frag_tensors", n);
    expect("frag_freed", freed);
    expect("frag_request_bytes", o.frag_request);
    expect("frag_before_allocated", s.allocated);
    expect("frag_before_reserved", s.reserved);
    expect("frag_before_segments", s.segments);
    expect("frag_largest_free_block", cc_largest_free_block(A, o.frag_request, NULL));
    fflush(stdout);
    void *big = cc_malloc(A, o.frag_request, NULL);
    cc_stats after = cc_get_stats(A);
    expect("frag_cuda_failures", after.cuda_failures - s.cuda_failures);
    expect("frag_released_segments", after.released_segments - s.released_segments);
    expect("frag_released_bytes", after.released_bytes - s.released_bytes);
    if (big) {
        printf("fragment_fit=1\n");
        return 0;
    }
    died("fragmented", o.frag_request);
    return 1;
}

/* ---- vLLM ---- */

/* A flat-token forward (vLLM batches tokens, flash attention, no scores
 * matrix): `N` tokens, logits for `seqs` of them. */
static void vllm_forward(unsigned long long N, unsigned long long seqs) {
    const shape_t *s = &o.shape;
    unsigned long long H = s->hidden, I = s->inter, q = (unsigned long long)s->heads * s->head_dim,
                       kv = (unsigned long long)s->kv_heads * s->head_dim;
    void *pos = T(N * 8, "activation");
    void *h = T(N * H * DT, "activation"), *res = T(N * H * DT, "activation");
    for (int l = 0; l < s->layers; l++) {
        void *n1 = T(N * H * DT, "activation");
        void *qkv = T(N * (q + 2 * kv) * DT, "activation");
        F(n1);
        void *att = T(N * q * DT, "activation");
        F(qkv);
        void *op = T(N * H * DT, "activation");
        F(att);
        F(h);
        h = op;
        void *n2 = T(N * H * DT, "activation");
        void *gu = T(N * 2 * I * DT, "activation");
        F(n2);
        void *act = T(N * I * DT, "activation");
        F(gu);
        void *d = T(N * H * DT, "activation");
        F(act);
        F(h);
        h = d;
    }
    void *fn = T(N * H * DT, "activation");
    F(h);
    F(res);
    void *sel = T(seqs * H * DT, "activation");
    F(fn);
    void *lg = T(seqs * s->vocab * 4, "activation");
    F(sel);
    void *pr = T(seqs * s->vocab * 4, "activation"), *tok = T(seqs * 8, "activation");
    F(lg);
    F(pr);
    F(tok);
    F(pos);
}

static int serve_vllm(void) {
    const shape_t *s = &o.shape;
    size_t free0, total;
    RT(cudaMemGetInfo(&free0, &total));
    load_phase(1);
    cc_stats w = cc_get_stats(A);

    at("profile");
    cc_reset_peak(A);
    vllm_forward((unsigned long long)o.max_batched_tokens, (unsigned long long)o.max_seqs);
    cc_stats p = cc_get_stats(A);
    size_t free1;
    RT(cudaMemGetInfo(&free1, &total));
    unsigned long long peak = p.peak_allocated - w.allocated;
    /* Memory in use that the allocator does not hold: context, cuBLAS, ... */
    unsigned long long non_torch = (total - free1) - p.reserved;
    cc_empty_cache(A);
    double want = (double)total * o.gpu_util;
    unsigned long long non_kv = w.allocated + peak + non_torch;
    unsigned long long budget = want > (double)non_kv ? (unsigned long long)(want - (double)non_kv) : 0;
    unsigned long long page = 2ull * o.block_size * s->kv_heads * s->head_dim * DT;
    unsigned long long blocks = budget / (page * (unsigned long long)s->layers);
    expect("profile_peak_activation", peak);
    expect("profile_reserved", p.reserved);
    expect("non_torch_bytes", non_torch);
    expect("kv_budget", budget);

    at("kv_cache");
    for (int l = 0; l < s->layers; l++) T(blocks * page, "kv_cache");
    unsigned long long tokens = blocks * (unsigned long long)o.block_size;
    printf("GPU KV cache size: %llu tokens\n", tokens);
    expect("page_bytes", page);
    expect("num_blocks", blocks);
    expect("kv_tensor_bytes", blocks * page);
    expect("kv_segment_bytes", cc_allocation_size(cc_round_size(blocks * page)));
    expect("kv_capacity_tokens", tokens);

    at("cuda_graphs");
    int pool = cc_begin_private_pool(A);
    int sizes[64], n = 0;
    for (int b = o.max_seqs; b >= 8 && n < 60; b -= 8) sizes[n++] = b;
    sizes[n++] = 4;
    sizes[n++] = 2;
    sizes[n++] = 1;
    cc_end_private_pool(A);
    for (int i = 0; i < n; i++) {
        /* An eager warm-up run of the size, then its capture into the graph pool. */
        vllm_forward((unsigned long long)sizes[i], (unsigned long long)sizes[i]);
        cc_use_private_pool(A, pool);
        vllm_forward((unsigned long long)sizes[i], (unsigned long long)sizes[i]);
        T((unsigned long long)sizes[i] * s->hidden * DT, "graph_output"); /* the graph's output */
        cc_end_private_pool(A);
    }
    expect("graphs", (unsigned long long)n);
    expect("graph_pool_reserved", cc_pool_reserved(A, pool));

    /* The sampler's warm-up at the largest batch. */
    vllm_forward((unsigned long long)o.max_batched_tokens, (unsigned long long)o.max_seqs);
    cc_stats before = cc_get_stats(A);
    expect("serve_reserved", before.reserved);
    expect("serve_segments", before.segments);

    at("serve");
    nap(o.phase_ms);
    char label[96];
    for (int i = 0; i < o.n_tokens; i++) {
        int prompt = o.tokens[i] - o.gen;
        snprintf(label, sizeof label, "request %d start tokens=%d", i, o.tokens[i]);
        at(label);
        vllm_forward((unsigned long long)prompt, 1); /* prefill, eager */
        counters_step();
        for (int t = 0; t < o.gen; t++) {
            /* decode: a graph replay, no allocation; the sampler runs eager */
            void *lg = T((unsigned long long)s->vocab * 4, "activation");
            F(lg);
            counters_step();
        }
        snprintf(label, sizeof label, "request %d done", i);
        at(label);
        nap(o.phase_ms);
    }
    finish();
    return 0;
}

int main(int argc, char **argv) {
    parse(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    A = cc_create(0, o.expandable);
    printf("scenario=%s\nshape=%s\n", o.scenario, o.shape.name);
    printf("kv_bytes_per_token=%llu\n",
           2ull * o.shape.layers * o.shape.kv_heads * o.shape.head_dim * DT);
    if (!strcmp(o.scenario, "healthy") || !strcmp(o.scenario, "warmup") ||
        !strcmp(o.scenario, "leak") || !strcmp(o.scenario, "unbounded"))
        return serve_hf();
    if (!strcmp(o.scenario, "fragmentation")) return fragmentation();
    if (!strcmp(o.scenario, "vllm")) return serve_vllm();
    usage();
    return 2;
}
