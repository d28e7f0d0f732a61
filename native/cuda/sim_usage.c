/* Per-process device usage for the stand-in NVML (native/nvml): the driver
 * knows what each process holds on each device, whatever path allocated it
 * (the context, allocations no interposer saw, pools, VMM handles), and NVML
 * reports that. When SIMCUDA_NVML_DIR names a directory, every change of a
 * device's charge rewrites <dir>/<pid> with one line per device:
 * "<device> <used bytes> <capacity>". The file goes when the process exits;
 * the stand-in NVML skips files of processes that are gone (killed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim_internal.h"

static char usage_path[4096];
static int usage_state; /* 0 unread, 1 off, 2 on */

/* Called with sim_lock held. */
void sim_publish_usage(void) {
    if (usage_state == 0) {
        const char *dir = getenv("SIMCUDA_NVML_DIR");
        usage_state = 1;
        if (dir && *dir &&
            snprintf(usage_path, sizeof usage_path, "%s/%d", dir, (int)getpid()) <
                (int)sizeof usage_path)
            usage_state = 2;
    }
    if (usage_state != 2) return;
    /* A child after fork writes its own file. */
    char path[4096], tmp[4096 + 16];
    const char *slash = strrchr(usage_path, '/');
    snprintf(path, sizeof path, "%.*s/%d", (int)(slash - usage_path), usage_path, (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    for (int i = 0; i < sim_device_count; i++)
        fprintf(f, "%d %llu %llu\n", i, (unsigned long long)sim_devices[i].used,
                (unsigned long long)sim_devices[i].capacity);
    if (fclose(f) == 0) rename(tmp, path); /* readers see a whole file */
}

__attribute__((destructor)) static void usage_gone(void) {
    if (usage_state != 2) return;
    char path[4096];
    const char *slash = strrchr(usage_path, '/');
    snprintf(path, sizeof path, "%.*s/%d", (int)(slash - usage_path), usage_path, (int)getpid());
    unlink(path);
}
