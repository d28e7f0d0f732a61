/* A small open-addressing hash map (linear probing, tombstones, growth). */
#include <stdlib.h>

#include "sim_internal.h"

#define DELETED UINT64_MAX

static size_t slot_of(uint64_t key, size_t cap) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

void *sim_map_get(const sim_map *m, uint64_t key) {
    if (m->cap == 0) return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) return m->vals[i];
        if (m->keys[i] == 0) return NULL;
    }
}

static int grow(sim_map *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    if (m->len * 4 < m->cap) cap = m->cap; /* mostly tombstones: rehash in place size */
    uint64_t *keys = calloc(cap, sizeof *keys);
    void **vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t k = m->keys[i];
        if (k == 0 || k == DELETED) continue;
        size_t j = slot_of(k, cap);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = k;
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->len;
    return 0;
}

int sim_map_put(sim_map *m, uint64_t key, void *val) {
    if ((m->used + 1) * 4 > m->cap * 3 && grow(m) != 0) return -1;
    size_t tomb = SIZE_MAX;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) {
            m->vals[i] = val;
            return 0;
        }
        if (m->keys[i] == DELETED && tomb == SIZE_MAX) tomb = i;
        if (m->keys[i] == 0) {
            if (tomb != SIZE_MAX) {
                i = tomb;
            } else {
                m->used++;
            }
            m->keys[i] = key;
            m->vals[i] = val;
            m->len++;
            return 0;
        }
    }
}

void *sim_map_del(sim_map *m, uint64_t key) {
    if (m->cap == 0) return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) {
            void *v = m->vals[i];
            m->keys[i] = DELETED;
            m->vals[i] = NULL;
            m->len--;
            return v;
        }
        if (m->keys[i] == 0) return NULL;
    }
}
