/* teacher_cache.h - the key of the one micro-batch whose teacher outputs a
 * trainer still holds (B, T, lens, the valid tokens and, for a packed batch,
 * their document starts), so that the
 * trainer (and the test reference, tests/c/ref) can skip the teacher's
 * forward when a micro-batch repeats. */
#ifndef BL_TEACHER_CACHE_H
#define BL_TEACHER_CACHE_H

#include <stdbool.h>

#include "core/error.h"

typedef struct BlBatchKey {
    bool valid;         /* false until a store, and after the held outputs change */
    int B, T;           /* the stored micro-batch's shape */
    int *tokens, *lens; /* [capacity B·T], [capacity B]; tokens past lens[b] are not kept */
    int *doc_start;     /* [capacity B·T], as tokens; read only when packed */
    bool packed;        /* the stored micro-batch had a doc_start */
} BlBatchKey;

/* Room for micro-batches of up to B sequences of T tokens; starts invalid. */
int bl_batch_key_build(BlBatchKey *k, int B, int T, BlError *err);
void bl_batch_key_free(BlBatchKey *k);

/* True when k is valid and names this micro-batch: the same B, T, lens,
 * tokens before each sequence's length (padding does not count) and
 * doc_start there (both NULL, or equal: a packed row's teacher outputs
 * depend on where its documents start). */
bool bl_batch_key_matches(const BlBatchKey *k, const int *tokens, const int *lens,
                          const int *doc_start, int B, int T);

/* Remembers this micro-batch (within the capacity k was built for). */
void bl_batch_key_store(BlBatchKey *k, const int *tokens, const int *lens, const int *doc_start,
                        int B, int T);

#endif
