/* A program that does not link CUDA and reaches it late, with dlopen: directly,
 * through a plug-in library, and through a dlsym found with dlsym. Built
 * without -lcudart -lcuda. Usage: late none|direct|plugin|dlsym-dlsym
 * `none` never touches CUDA. Prints `expect.` lines. */
#include "client.h"

typedef void *(*dlsym_fn)(void *, const char *);

static void *open_or_die(const char *name) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", name, dlerror());
        exit(3);
    }
    return h;
}

static int allocate(dlsym_fn find, void *rt, int n, size_t size) {
    return allocate_keep_all_but_first((cudaError_t(*)(void **, size_t))find(rt, "cudaMalloc"),
                                       (cudaError_t(*)(void *))find(rt, "cudaFree"), n, size);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "none";
    int live;
    size_t size = 3 * MiB;
    if (!strcmp(mode, "none")) {
        printf("no CUDA here\n");
        return 0;
    } else if (!strcmp(mode, "direct")) {
        live = allocate(dlsym, open_or_die("libcudart.so.12"), 4, size);
    } else if (!strcmp(mode, "plugin")) {
        void *plugin = open_or_die("libkvplugin.so");
        int (*run)(int, size_t) = (int (*)(int, size_t))dlsym(plugin, "plugin_allocate");
        live = run ? run(4, size) : -1;
    } else if (!strcmp(mode, "dlsym-dlsym")) {
        /* dlsym asked for dlsym, then used: the hook must hand back a working one. */
        dlsym_fn find = (dlsym_fn)dlsym(RTLD_DEFAULT, "dlsym");
        void *rt = open_or_die("libcudart.so.12");
        dlsym_fn again = find ? (dlsym_fn)find(RTLD_DEFAULT, "dlsym") : NULL;
        live = again ? allocate(again, rt, 4, size) : -1;
    } else {
        return 2;
    }
    if (live < 0) {
        fprintf(stderr, "allocation through %s failed\n", mode);
        return 3;
    }
    printf("expect.device0.live_bytes=%llu\n", (unsigned long long)live * size);
    printf("expect.device0.live_count=%d\n", live);
    return 0;
}
