/* teacher_cache.c - the teacher cache's micro-batch key (see teacher_cache.h). */
#include "train/teacher_cache.h"

#include <stdlib.h>
#include <string.h>

int bl_batch_key_build(BlBatchKey *k, int B, int T, BlError *err) {
    memset(k, 0, sizeof *k);
    if (!(k->tokens = bl_malloc(sizeof(int) * (size_t)B * T, err)) ||
        !(k->lens = bl_malloc(sizeof(int) * (size_t)B, err)) ||
        !(k->doc_start = bl_malloc(sizeof(int) * (size_t)B * T, err))) {
        bl_batch_key_free(k);
        return -1;
    }
    return 0;
}

void bl_batch_key_free(BlBatchKey *k) {
    free(k->tokens);
    free(k->lens);
    free(k->doc_start);
    memset(k, 0, sizeof *k);
}

bool bl_batch_key_matches(const BlBatchKey *k, const int *tokens, const int *lens,
                          const int *doc_start, int B, int T) {
    if (!k->valid || k->B != B || k->T != T || k->packed != (doc_start != NULL)) return false;
    for (int b = 0; b < B; b++) {
        if (lens[b] != k->lens[b]) return false;
        size_t r0 = (size_t)b * T, n = sizeof(int) * (lens[b] > 0 ? lens[b] : 0);
        if (memcmp(tokens + r0, k->tokens + r0, n) ||
            (doc_start && memcmp(doc_start + r0, k->doc_start + r0, n)))
            return false;
    }
    return true;
}

void bl_batch_key_store(BlBatchKey *k, const int *tokens, const int *lens, const int *doc_start,
                        int B, int T) {
    for (int b = 0; b < B; b++) {
        size_t r0 = (size_t)b * T, n = sizeof(int) * lens[b];
        k->lens[b] = lens[b];
        memcpy(k->tokens + r0, tokens + r0, n);
        if (doc_start) memcpy(k->doc_start + r0, doc_start + r0, n);
    }
    k->packed = doc_start != NULL;
    k->B = B;
    k->T = T;
    k->valid = true;
}
