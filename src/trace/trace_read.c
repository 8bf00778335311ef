/* trace_read.c - opening a teacher trace: map the file, check its layout,
 * size and checksum before anything is read from it, and compare it with the
 * model and the data a trainer uses (format in trace.h). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"
#include "trace/trace.h"
#include "trace/trace_format.h"
#include "ops/loss.h"

void bl_trace_close(BlTrace *t) {
    if (!t) return;
    if (t->map) munmap((void *)t->map, t->bytes);
    free(t->path);
    free(t->len);
    free(t->off);
    free(t);
}

void bl_trace_record(const BlTrace *t, int i, BlTraceRecord *r) {
    size_t n = (size_t)t->len[i], rows = n - 1, K = (size_t)t->K;
    const unsigned char *p = t->map + t->off[i];
    r->n = (int)n;
    r->tokens = (const int32_t *)p;
    r->ids = (const int32_t *)(p + 4 * n);
    r->logp = (const float *)(p + 4 * n + 4 * rows * K);
    r->other = (const float *)(p + 4 * n + 8 * rows * K);
    r->hidden = t->hidden == BL_TRACE_HIDDEN_NONE ? NULL : p + 4 * n + 8 * rows * K + 4 * rows;
}

/* The header's fields into t; the sizes they imply are checked later. */
static int read_header(BlTrace *t, const unsigned char *h, BlError *err) {
    if (memcmp(h + TH_MAGIC, TRACE_MAGIC, 8) != 0)
        return bl_fail(err, "not a bitlab teacher trace (no BLTRACE magic)");
    uint32_t v = th_get32(h, TH_VERSION);
    if (v != BL_TRACE_VERSION)
        return bl_fail(err, "trace format version %u; this bitlab reads version %d", v,
                       BL_TRACE_VERSION);
    if (th_get32(h, TH_HEADER_BYTES) != TRACE_HEADER_BYTES)
        return bl_fail(err, "header size %u, expected %d", th_get32(h, TH_HEADER_BYTES),
                       TRACE_HEADER_BYTES);
    t->K = (int)th_get32(h, TH_K);
    memcpy(&t->tau, h + TH_TAU, 4);
    t->seq = (int)th_get32(h, TH_SEQ);
    t->records = (int)th_get32(h, TH_RECORDS);
    t->positions = (long long)th_get64(h, TH_POSITIONS);
    t->rows = (long long)th_get64(h, TH_ROWS);
    t->hidden = (BlTraceHidden)th_get32(h, TH_HIDDEN);
    t->n_layers = (int)th_get32(h, TH_N_LAYERS);
    t->dim = (int)th_get32(h, TH_DIM);
    t->vocab = (int)th_get32(h, TH_VOCAB);
    t->n_heads = (int)th_get32(h, TH_N_HEADS);
    t->n_kv_heads = (int)th_get32(h, TH_N_KV_HEADS);
    t->hidden_dim = (int)th_get32(h, TH_HIDDEN_DIM);
    memcpy(t->model_sha256, h + TH_MODEL_SHA, 64);
    memcpy(t->data_sha256, h + TH_DATA_SHA, 64);
    t->model_sha256[64] = t->data_sha256[64] = '\0';
    if (t->K < 1 || t->K > BL_TOPK_MAX) return bl_fail(err, "header: K %d", t->K);
    if (!(t->tau > 0.0f) || !isfinite(t->tau)) return bl_fail(err, "header: tau %g", t->tau);
    if (t->seq < 2 || t->records < 1)
        return bl_fail(err, "header: seq %d, %d records", t->seq, t->records);
    if ((uint32_t)t->hidden > BL_TRACE_HIDDEN_F16)
        return bl_fail(err, "header: hidden-state type %u", (unsigned)t->hidden);
    if (t->n_layers < 1 || t->dim < 1 || t->vocab < 1 || t->K > t->vocab || t->n_layers > 4096 ||
        t->dim > 1 << 20)
        return bl_fail(err, "header: %d layers, dim %d, vocab %d, K %d", t->n_layers, t->dim,
                       t->vocab, t->K);
    return 0;
}

/* The record table → lengths and offsets, which must add up to the header's
 * counts and the file's size. */
static int read_table(BlTrace *t, size_t declared, BlError *err) {
    size_t need = TRACE_HEADER_BYTES + trace_table_bytes((size_t)t->records);
    if (need > t->bytes) return bl_fail(err, "truncated: the record table ends past the file");
    size_t hb = t->hidden == BL_TRACE_HIDDEN_F32 ? 4 : t->hidden == BL_TRACE_HIDDEN_F16 ? 2 : 0;
    /* every record holds at least 2 tokens: the count must fit in the file
     * before the tables are sized from it */
    size_t least = trace_record_bytes(2, (size_t)t->K, hb, (size_t)t->n_layers, (size_t)t->dim);
    if ((size_t)t->records > (t->bytes - need) / least)
        return bl_fail(err, "header: %d records of at least %zu bytes cannot fit in the %zu bytes after the "
                       "record table", t->records, least, t->bytes - need);
    if (!(t->len = bl_malloc(sizeof(int) * t->records, err)) ||
        !(t->off = bl_malloc(sizeof(size_t) * t->records, err)))
        return -1;
    long long pos = 0, rows = 0;
    for (int i = 0; i < t->records; i++) {
        uint32_t n;
        memcpy(&n, t->map + TRACE_HEADER_BYTES + 4 * (size_t)i, 4);
        if (n < 2 || n > (uint32_t)t->seq)
            return bl_fail(err, "record %d has %u tokens (2..seq %d)", i + 1, n, t->seq);
        t->len[i] = (int)n;
        t->off[i] = need;
        need += trace_record_bytes(n, (size_t)t->K, hb, (size_t)t->n_layers, (size_t)t->dim);
        pos += n;
        rows += n - 1;
    }
    if (pos != t->positions || rows != t->rows)
        return bl_fail(err, "the record table has %lld positions and %lld rows, the header %lld "
                       "and %lld", pos, rows, t->positions, t->rows);
    if (need != declared)
        return bl_fail(err, "the records take %zu bytes, the header says %zu", need, declared);
    return 0;
}

/* sha256 of the file with the checksum field zero, against the field. */
static int verify_checksum(const BlTrace *t, BlError *err) {
    unsigned char h[TRACE_HEADER_BYTES], digest[32];
    memcpy(h, t->map, sizeof h);
    memset(h + TH_CHECKSUM, 0, 32);
    BlSha256 s;
    bl_sha256_init(&s);
    bl_sha256_update(&s, h, sizeof h);
    bl_sha256_update(&s, t->map + sizeof h, t->bytes - sizeof h);
    bl_sha256_final(&s, digest, NULL);
    if (memcmp(digest, t->map + TH_CHECKSUM, 32) != 0)
        return bl_fail(err, "checksum mismatch: the file is corrupt (its sha256 differs from the "
                       "one in its header)");
    return 0;
}

/* Tokens and ids inside the vocabulary (so a fetch never indexes out). */
static int check_ranges(const BlTrace *t, BlError *err) {
    for (int i = 0; i < t->records; i++) {
        BlTraceRecord r;
        bl_trace_record(t, i, &r);
        for (int j = 0; j < r.n; j++)
            if (r.tokens[j] < 0 || r.tokens[j] >= t->vocab)
                return bl_fail(err, "record %d: token %d at %d is outside the vocabulary", i + 1,
                               r.tokens[j], j);
        for (size_t j = 0; j < (size_t)(r.n - 1) * t->K; j++)
            if (r.ids[j] < 0 || r.ids[j] >= t->vocab)
                return bl_fail(err, "record %d: top-K id %d is outside the vocabulary", i + 1,
                               r.ids[j]);
    }
    return 0;
}

static int open_checked(BlTrace *t, const char *path, BlError *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bl_fail(err, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return bl_fail(err, "cannot stat: %s", strerror(errno));
    }
    t->bytes = (size_t)st.st_size;
    if (t->bytes < 8) {
        close(fd);
        return bl_fail(err, "not a bitlab teacher trace (%zu bytes)", t->bytes);
    }
    void *map = mmap(NULL, t->bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return bl_fail(err, "cannot map %zu bytes: %s", t->bytes, strerror(errno));
    t->map = map;
    if (memcmp(t->map, TRACE_MAGIC, 8) != 0)
        return bl_fail(err, "not a bitlab teacher trace (no BLTRACE magic)");
    if (t->bytes < TRACE_HEADER_BYTES)
        return bl_fail(err, "truncated: %zu bytes, shorter than the %d-byte header", t->bytes,
                       TRACE_HEADER_BYTES);
    if (read_header(t, t->map, err)) return -1;
    uint64_t declared = th_get64(t->map, TH_FILE_BYTES);
    if (t->bytes < declared)
        return bl_fail(err, "truncated: %zu of the %llu bytes its header declares", t->bytes,
                       (unsigned long long)declared);
    if (t->bytes > declared)
        return bl_fail(err, "%zu bytes, its header declares %llu (trailing data)", t->bytes,
                       (unsigned long long)declared);
    if (read_table(t, (size_t)declared, err) || verify_checksum(t, err) || check_ranges(t, err))
        return -1;
    return 0;
}

int bl_trace_open(BlTrace **out, const char *path, BlError *err) {
    *out = NULL;
    BlTrace *t = bl_calloc(1, sizeof *t, err);
    if (!t) return -1;
    size_t pl = strlen(path) + 1;
    if (!(t->path = bl_malloc(pl, err))) {
        free(t);
        return -1;
    }
    memcpy(t->path, path, pl);
    if (open_checked(t, path, err)) {
        bl_trace_close(t);
        return bl_fail_prefix(err, "%s", path);
    }
    *out = t;
    return 0;
}

// ----------------------------------------------------------------------------
// is it this model's, this data's?

static int dims_differ(const BlTrace *t, const char *what, int in_trace, int in_model,
                       const BlModel *m, BlError *err) {
    if (in_trace == in_model) return 0;
    return bl_fail(err, "%s: made from a model with %s %d, %s has %s %d (another model)", t->path,
                   what, in_trace, m->path, what, in_model);
}

int bl_trace_check_model(const BlTrace *t, const BlModel *m, BlError *err) {
    const BlConfig *c = &m->cfg;
    if (dims_differ(t, "n_layers", t->n_layers, c->n_layers, m, err) ||
        dims_differ(t, "dim", t->dim, c->dim, m, err) ||
        dims_differ(t, "vocab", t->vocab, c->vocab_size, m, err) ||
        dims_differ(t, "n_heads", t->n_heads, c->n_heads, m, err) ||
        dims_differ(t, "n_kv_heads", t->n_kv_heads, c->n_kv_heads, m, err) ||
        dims_differ(t, "hidden_dim", t->hidden_dim, c->hidden_dim, m, err))
        return -1;
    char hex[65];
    if (bl_sha256_path(m->path, hex, err)) return bl_fail_prefix(err, "%s: the model", t->path);
    if (strcmp(hex, t->model_sha256) != 0)
        return bl_fail(err, "%s: made from the model with sha256 %.16s…, %s has sha256 %.16s… "
                       "(another model, or the file changed: make the trace again)",
                       t->path, t->model_sha256, m->path, hex);
    return 0;
}

int bl_trace_check_data(const BlTrace *t, const BlDataset *d, BlError *err) {
    char hex[65];
    bl_trace_data_sha256(d, hex);
    if (strcmp(hex, t->data_sha256) == 0) return 0;
    return bl_fail(err, "%s: made from other data: data sha256 %.16s… (%d examples), the "
                   "dataset's is %.16s… (%d examples): make the trace from this dataset",
                   t->path, t->data_sha256, t->records, hex, d->n);
}
