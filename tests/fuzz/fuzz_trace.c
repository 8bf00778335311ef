/* fuzz_trace.c - libFuzzer harness: the input is a teacher trace
 * (trace/trace_read.c). Before it is written, the header's file size and
 * sha256 are set to match the input (when it is at least a header long), so
 * that mutations reach the record table and records instead of dying at the
 * checksum. Then every record is read and each is fetched back through the
 * trainer's provider (trace/trace_fetch.c). */
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"
#include "fuzz_common.h"
#include "trace/trace.h"
#include "trace/trace_format.h"

static void read_all(const BlTrace *t) {
    volatile uint32_t sink = 0;
    for (int i = 0; i < t->records; i++) {
        BlTraceRecord r;
        bl_trace_record(t, i, &r);
        size_t rows = (size_t)r.n - 1;
        for (int j = 0; j < r.n; j++) sink += (uint32_t)r.tokens[j];
        for (size_t j = 0; j < rows * (size_t)t->K; j++) sink += (uint32_t)r.ids[j] + (r.logp[j] > 0);
        for (size_t j = 0; j < rows; j++) sink += r.other[j] > 0;
        if (r.hidden) {
            size_t nh = (size_t)t->n_layers * r.n * t->dim, hb = t->hidden == BL_TRACE_HIDDEN_F32 ? 4 : 2;
            const uint8_t *h = r.hidden;
            sink += h[nh * hb - 1];
        }
    }
    (void)sink;
}

/* Each record (the first 8) as a one-row batch, through the provider. */
static void fetch_all(const BlTrace *t) {
    BlError err;
    BlTraceReader *rd = NULL;
    if (bl_trace_reader_new(&rd, t, &err) != 0) return;
    BlTeacherProvider p;
    bl_trace_provider(rd, &p);
    for (int i = 0; i < t->records && i < 8; i++) {
        BlTraceRecord r;
        bl_trace_record(t, i, &r);
        size_t n = (size_t)r.n, K = (size_t)t->K, D = (size_t)t->dim;
        int *tokens = malloc(sizeof(int) * n), *ids = malloc(sizeof(int) * n * K), len = r.n;
        float *logp = malloc(sizeof(float) * n * K), *other = malloc(sizeof(float) * n);
        float **hidden = NULL;
        if (t->hidden != BL_TRACE_HIDDEN_NONE && (size_t)t->n_layers * n * D <= (1u << 22)) {
            hidden = calloc((size_t)t->n_layers, sizeof *hidden);
            for (int l = 0; l < t->n_layers; l++) hidden[l] = malloc(sizeof(float) * n * D);
        }
        memcpy(tokens, r.tokens, sizeof(int) * n);
        if (t->hidden == BL_TRACE_HIDDEN_NONE || hidden) {
            if (p.fetch(p.ctx, tokens, &len, 1, r.n, ids, logp, other, hidden, &err) != 0) {
                fprintf(stderr, "fuzz: record %d is not found in its own trace: %s\n", i, err.msg);
                abort();
            }
        }
        if (hidden)
            for (int l = 0; l < t->n_layers; l++) free(hidden[l]);
        free(hidden);
        free(tokens);
        free(ids);
        free(logp);
        free(other);
    }
    bl_trace_reader_free(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    if (size >= TRACE_HEADER_BYTES) {
        th_put64(buf, TH_FILE_BYTES, (uint64_t)size);
        memset(buf + TH_CHECKSUM, 0, 32);
        BlSha256 s;
        unsigned char digest[32];
        bl_sha256_init(&s);
        bl_sha256_update(&s, buf, size);
        bl_sha256_final(&s, digest, NULL);
        memcpy(buf + TH_CHECKSUM, digest, 32);
    }
    char path[128];
    fz_write(fz_path(path, sizeof path, "teacher.trace"), buf, size);
    free(buf);
    BlError err;
    BlTrace *t = NULL;
    if (bl_trace_open(&t, path, &err) != 0) return fz_note("trace", err.msg), 0;
    read_all(t);
    fetch_all(t);
    bl_trace_close(t);
    return 0;
}
