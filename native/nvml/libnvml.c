/* The stand-in libnvidia-ml.so.1: the NVML calls kvscope's device-level
 * reading uses, with NVML's ABI. Devices and capacities as the stand-in
 * driver has them (SIMCUDA_DEVICES, SIMCUDA_DEVICE_MEM); per-process usage
 * from the files the stand-in driver writes under SIMCUDA_NVML_DIR
 * (cuda/sim_usage.c): device-level, like the real driver's, so memory no
 * interposer saw (the context, unhooked paths) is in it. It never loads the
 * driver: NVML reads the kernel driver's accounting, it makes no context.
 * SIMNVML_DRIVER=absent makes nvmlInit_v2 fail as on a host without the
 * NVIDIA driver. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "nvml.h"

#define EXPORT __attribute__((visibility("default")))
#define MAX_DEVICES 16

struct nvmlDevice_st {
    unsigned int index;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count;
static unsigned int device_count;
static unsigned long long capacity;
static struct nvmlDevice_st devices[MAX_DEVICES];

static unsigned long long parse_size(const char *s, unsigned long long fallback) {
    if (!s || !*s) return fallback;
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return fallback;
    while (*end == ' ') end++;
    double mul = 1;
    if (!strncasecmp(end, "t", 1)) mul = 1099511627776.0;
    else if (!strncasecmp(end, "g", 1)) mul = 1073741824.0;
    else if (!strncasecmp(end, "m", 1)) mul = 1048576.0;
    else if (!strncasecmp(end, "k", 1)) mul = 1024.0;
    return (unsigned long long)(v * mul);
}

EXPORT nvmlReturn_t nvmlInit_v2(void) {
    const char *drv = getenv("SIMNVML_DRIVER");
    if (drv && !strcmp(drv, "absent")) return NVML_ERROR_DRIVER_NOT_LOADED;
    pthread_mutex_lock(&lock);
    if (init_count++ == 0) {
        const char *n = getenv("SIMCUDA_DEVICES");
        long c = n && *n ? strtol(n, NULL, 10) : 1;
        device_count = c < 0 ? 0 : c > MAX_DEVICES ? MAX_DEVICES : (unsigned int)c;
        capacity = parse_size(getenv("SIMCUDA_DEVICE_MEM"), 80ull << 30);
        for (unsigned int i = 0; i < MAX_DEVICES; i++) devices[i].index = i;
    }
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = init_count > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (init_count > 0) init_count--;
    pthread_mutex_unlock(&lock);
    return r;
}

static int ready(void) {
    pthread_mutex_lock(&lock);
    int r = init_count > 0;
    pthread_mutex_unlock(&lock);
    return r;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NO_PERMISSION: return "Insufficient Permissions";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!ready()) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    *count = device_count;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!ready()) return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= device_count) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

static int valid(nvmlDevice_t d) {
    return d >= devices && d < devices + device_count && d == &devices[d->index];
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    if (!ready()) return NVML_ERROR_UNINITIALIZED;
    if (!valid(device) || !uuid) return NVML_ERROR_INVALID_ARGUMENT;
    char buf[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
    int n = snprintf(buf, sizeof buf, "GPU-5ca1ab1e-0000-4000-8000-%012u", device->index);
    if ((unsigned int)n + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(uuid, buf, (size_t)n + 1);
    return NVML_SUCCESS;
}

/* Each live process's bytes on `index`: calls `each(pid, bytes, arg)`. */
static void scan(unsigned int index, void (*each)(unsigned int, unsigned long long, void *),
                 void *arg) {
    const char *dir = getenv("SIMCUDA_NVML_DIR");
    if (!dir || !*dir) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (!*name) continue;
        int digits = 1;
        for (const char *c = name; *c; c++) digits &= isdigit((unsigned char)*c) != 0;
        if (!digits) continue;
        long pid = strtol(name, NULL, 10);
        if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) continue; /* gone */
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        unsigned int dev;
        unsigned long long used, cap;
        while (fscanf(f, "%u %llu %llu", &dev, &used, &cap) == 3)
            if (dev == index && used > 0) each((unsigned int)pid, used, arg);
        fclose(f);
    }
    closedir(d);
}

struct gather {
    nvmlProcessInfo_t *infos;
    unsigned int cap, n;
    unsigned long long total;
};

static void gather_one(unsigned int pid, unsigned long long used, void *arg) {
    struct gather *g = arg;
    if (g->infos && g->n < g->cap)
        g->infos[g->n] = (nvmlProcessInfo_t){pid, used, 0xFFFFFFFFu, 0xFFFFFFFFu};
    g->n++;
    g->total += used;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    if (!ready()) return NVML_ERROR_UNINITIALIZED;
    if (!valid(device) || !memory) return NVML_ERROR_INVALID_ARGUMENT;
    struct gather g = {NULL, 0, 0, 0};
    scan(device->index, gather_one, &g);
    unsigned long long used = g.total < capacity ? g.total : capacity;
    *memory = (nvmlMemory_t){capacity, capacity - used, used};
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device,
                                                            unsigned int *infoCount,
                                                            nvmlProcessInfo_t *infos) {
    if (!ready()) return NVML_ERROR_UNINITIALIZED;
    if (!valid(device) || !infoCount) return NVML_ERROR_INVALID_ARGUMENT;
    if (*infoCount > 0 && !infos) return NVML_ERROR_INVALID_ARGUMENT;
    struct gather g = {infos, *infoCount, 0, 0};
    scan(device->index, gather_one, &g);
    /* As the real call: too small a buffer says how many are needed. */
    if (g.n > *infoCount) {
        *infoCount = g.n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    *infoCount = g.n;
    return NVML_SUCCESS;
}
