/* trace_fetch.c - a trace as the trainer's teacher: each batch row is found
 * by its content (see trace.h: a row of n tokens matches the record whose
 * first min(n_rec, T) tokens are those), and its top-K rows and hidden states
 * are copied into the trainer's buffers.
 *
 * The index is an open-addressing hash table over the records' first
 * min(n_rec, T) tokens; it depends on the batch length T, so it is rebuilt
 * when a batch of another length arrives (one pass over the trace's tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/quants.h"
#include "trace/trace.h"

struct BlTraceReader {
    const BlTrace *t;
    int T;          /* the batch length the index is for, 0 = none yet */
    size_t cap;     /* slots, a power of two >= 2·records */
    int *slot;      /* record index or −1 */
    char what[512]; /* "trace PATH" for messages */
};

static uint64_t hash_tokens(const int32_t *tok, int n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 over the ids' bytes */
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)tok[i];
        for (int k = 0; k < 4; k++) {
            h ^= (v >> (8 * k)) & 0xffu;
            h *= 0x100000001b3ull;
        }
    }
    return h ^ (uint64_t)n * 0x9e3779b97f4a7c15ull;
}

static int key_len(const BlTrace *t, int i, int T) { return t->len[i] < T ? t->len[i] : T; }

static void build_index(BlTraceReader *r, int T) {
    const BlTrace *t = r->t;
    memset(r->slot, 0xff, sizeof(int) * r->cap);
    for (int i = 0; i < t->records; i++) {
        BlTraceRecord rec;
        bl_trace_record(t, i, &rec);
        size_t s = hash_tokens(rec.tokens, key_len(t, i, T)) & (r->cap - 1);
        while (r->slot[s] >= 0) s = (s + 1) & (r->cap - 1);
        r->slot[s] = i; /* duplicates keep insertion order: the first one is found first */
    }
    r->T = T;
}

/* The record holding this row, or −1. */
static int find_row(const BlTraceReader *r, const int *tokens, int n) {
    const BlTrace *t = r->t;
    size_t s = hash_tokens((const int32_t *)tokens, n) & (r->cap - 1);
    for (; r->slot[s] >= 0; s = (s + 1) & (r->cap - 1)) {
        int i = r->slot[s];
        if (key_len(t, i, r->T) != n) continue;
        BlTraceRecord rec;
        bl_trace_record(t, i, &rec);
        if (memcmp(rec.tokens, tokens, sizeof(int32_t) * (size_t)n) == 0) return i;
    }
    return -1;
}

static int not_found(const BlTraceReader *r, const int *tokens, int n, int b, int T,
                     BlError *err) {
    char head[96] = "";
    for (int i = 0, o = 0; i < n && i < 6 && o < (int)sizeof head - 16; i++)
        o += snprintf(head + o, sizeof head - o, "%s%d", i ? " " : "", tokens[i]);
    return bl_fail(err, "batch row %d (%d tokens: %s%s) is not in %s: the trace was made from "
                   "other data, or with examples cut to %d tokens while this batch is %d long",
                   b + 1, n, head, n > 6 ? " …" : "", r->what, r->t->seq, T);
}

static int fetch(void *ctx, const int *tokens, const int *lens, int B, int T, int *ids,
                 float *logp, float *other, float *const *hidden, BlError *err) {
    BlTraceReader *r = ctx;
    const BlTrace *t = r->t;
    if (T != r->T) build_index(r, T);
    size_t K = (size_t)t->K, D = (size_t)t->dim;
    for (int b = 0; b < B; b++) {
        int n = lens[b];
        if (n <= 0) continue; /* an empty row selects nothing */
        size_t r0 = (size_t)b * T;
        int i = find_row(r, tokens + r0, n);
        if (i < 0) return not_found(r, tokens + r0, n, b, T, err);
        BlTraceRecord rec;
        bl_trace_record(t, i, &rec);
        memcpy(ids + r0 * K, rec.ids, sizeof(int) * (size_t)(n - 1) * K);
        memcpy(logp + r0 * K, rec.logp, sizeof(float) * (size_t)(n - 1) * K);
        memcpy(other + r0, rec.other, sizeof(float) * (size_t)(n - 1));
        if (!hidden) continue;
        for (int l = 0; l < t->n_layers; l++) {
            float *dst = hidden[l] + r0 * D;
            size_t at = (size_t)l * rec.n * D; /* layer l of the record, its first n rows */
            if (t->hidden == BL_TRACE_HIDDEN_F32) {
                memcpy(dst, (const float *)rec.hidden + at, sizeof(float) * n * D);
            } else {
                const uint16_t *h = (const uint16_t *)rec.hidden + at;
                for (size_t j = 0; j < (size_t)n * D; j++) dst[j] = bl_fp16_to_fp32(h[j]);
            }
        }
    }
    return 0;
}

int bl_trace_reader_new(BlTraceReader **out, const BlTrace *t, BlError *err) {
    *out = NULL;
    BlTraceReader *r = bl_calloc(1, sizeof *r, err);
    if (!r) return -1;
    r->t = t;
    r->cap = 16;
    while (r->cap < 2 * (size_t)t->records) r->cap *= 2;
    if (!(r->slot = bl_malloc(sizeof(int) * r->cap, err))) {
        free(r);
        return -1;
    }
    snprintf(r->what, sizeof r->what, "trace %s", t->path);
    *out = r;
    return 0;
}

void bl_trace_reader_free(BlTraceReader *r) {
    if (!r) return;
    free(r->slot);
    free(r);
}

void bl_trace_provider(BlTraceReader *r, BlTeacherProvider *p) {
    *p = (BlTeacherProvider){.fetch = fetch, .ctx = r, .K = r->t->K, .tau = r->t->tau,
                             .has_hidden = r->t->hidden != BL_TRACE_HIDDEN_NONE, .what = r->what};
}
