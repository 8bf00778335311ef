/* trace_write.c - making a teacher trace: the teacher forward over the
 * dataset in batches, the top-K of each row, the hidden states, streamed to
 * disk with a running sha256 (format in trace.h / trace_format.h).
 *
 * The forward and the top-K are the very calls the trainer's live teacher
 * makes (bl_forward with the attention probabilities kept, then
 * bl_forward_logits, then bl_topk_logprobs), so a step from the trace sees
 * the values a live step would. The forward runs on the config's backend
 * with a device copy of the weights (backend/device_model.h); the logits and
 * hidden states come back to host memory for the top-K and the file. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/device_model.h"
#include "core/sha256.h"
#include "io/quants.h"
#include "nn/forward.h"
#include "trace/trace.h"
#include "trace/trace_format.h"
#include "ops/loss.h"

const char *bl_trace_hidden_name(BlTraceHidden h) {
    return h == BL_TRACE_HIDDEN_F32 ? "f32" : h == BL_TRACE_HIDDEN_F16 ? "f16" : "none";
}

void bl_trace_data_sha256(const BlDataset *d, char hex[65]) {
    BlSha256 s;
    bl_sha256_init(&s);
    uint32_t n = (uint32_t)d->n;
    bl_sha256_update(&s, &n, 4);
    for (int i = 0; i < d->n; i++) {
        int len;
        const int *ids = bl_dataset_example(d, i, &len, NULL);
        uint32_t l = (uint32_t)len;
        bl_sha256_update(&s, &l, 4);
        bl_sha256_update(&s, ids, sizeof(int32_t) * (size_t)len); /* int is int32 here */
    }
    unsigned char digest[32];
    bl_sha256_final(&s, digest, hex);
}

// ----------------------------------------------------------------------------
// the output stream: every byte goes through the checksum

typedef struct {
    FILE *f;
    BlSha256 sum;
    size_t written;
    int failed;
} Out;

static void put(Out *o, const void *p, size_t n) {
    if (o->failed || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) {
        o->failed = errno ? errno : EIO;
        return;
    }
    bl_sha256_update(&o->sum, p, n);
    o->written += n;
}

static void pad8(Out *o) {
    static const unsigned char zero[8];
    put(o, zero, trace_pad8(o->written) - o->written);
}

// ----------------------------------------------------------------------------
// the trace

typedef struct {
    BlDeviceModel dm;       /* the teacher on the backend (the host model itself on the CPU) */
    bool have_dm;
    BlForwardState fs;
    int *tokens, *lens, *ids, *n;
    float *logp, *other, *hid;
    float *host_logits;     /* [B·T, vocab] the logits read back from a device; NULL on the CPU */
    const float *logits;    /* host logits of the batch just forwarded */
    uint16_t *h16;
} Work;

static void free_work(Work *w) {
    bl_free_forward_state(&w->fs);
    if (w->have_dm) bl_device_model_free(&w->dm);
    free(w->host_logits);
    free(w->tokens);
    free(w->lens);
    free(w->ids);
    free(w->n);
    free(w->logp);
    free(w->other);
    free(w->hid);
    free(w->h16);
}

static int check_config(const BlModel *m, const BlDataset *d, const BlTraceConfig *c,
                        BlError *err) {
    int V = m->cfg.vocab_size, kmax = V < BL_TOPK_MAX ? V : BL_TOPK_MAX;
    if (c->K < 1 || c->K > kmax) return bl_fail(err, "trace: k=%d is outside 1..%d", c->K, kmax);
    if (!(c->tau > 0.0f) || !isfinite(c->tau))
        return bl_fail(err, "trace: tau %g must be positive", c->tau);
    if (c->seq < 2) return bl_fail(err, "trace: seq %d must be >= 2", c->seq);
    if (c->batch < 1) return bl_fail(err, "trace: batch %d must be >= 1", c->batch);
    if (c->hidden < BL_TRACE_HIDDEN_NONE || c->hidden > BL_TRACE_HIDDEN_F16)
        return bl_fail(err, "trace: unknown hidden-state type %d", (int)c->hidden);
    if (d->n < 1) return bl_fail(err, "trace: the dataset has no examples");
    if (d->model->cfg.vocab_size != V || d->model->cfg.dim != m->cfg.dim)
        return bl_fail(err, "trace: the dataset was tokenised for another model");
    return 0;
}

static void fill_header(unsigned char *h, const BlModel *m, const BlTraceConfig *c, int records,
                        long long positions, long long rows, size_t bytes,
                        const BlTraceSummary *s) {
    const BlConfig *mc = &m->cfg;
    memset(h, 0, TRACE_HEADER_BYTES);
    memcpy(h + TH_MAGIC, TRACE_MAGIC, 8);
    th_put32(h, TH_VERSION, BL_TRACE_VERSION);
    th_put32(h, TH_HEADER_BYTES, TRACE_HEADER_BYTES);
    th_put32(h, TH_K, (uint32_t)c->K);
    memcpy(h + TH_TAU, &c->tau, 4);
    th_put32(h, TH_SEQ, (uint32_t)c->seq);
    th_put32(h, TH_RECORDS, (uint32_t)records);
    th_put64(h, TH_POSITIONS, (uint64_t)positions);
    th_put64(h, TH_ROWS, (uint64_t)rows);
    th_put32(h, TH_HIDDEN, (uint32_t)c->hidden);
    th_put32(h, TH_N_LAYERS, (uint32_t)mc->n_layers);
    th_put32(h, TH_DIM, (uint32_t)mc->dim);
    th_put32(h, TH_VOCAB, (uint32_t)mc->vocab_size);
    th_put32(h, TH_N_HEADS, (uint32_t)mc->n_heads);
    th_put32(h, TH_N_KV_HEADS, (uint32_t)mc->n_kv_heads);
    th_put32(h, TH_HIDDEN_DIM, (uint32_t)mc->hidden_dim);
    memcpy(h + TH_MODEL_SHA, s->model_sha256, 64);
    memcpy(h + TH_DATA_SHA, s->data_sha256, 64);
    th_put64(h, TH_FILE_BYTES, (uint64_t)bytes);
}

/* Writes record b of the batch just forwarded (Tb tokens per row). */
static void write_record(Out *o, Work *w, const BlModel *m, const BlTraceConfig *c, int b, int Tb,
                         int Bb) {
    const BlConfig *mc = &m->cfg;
    int n = w->lens[b], K = c->K, V = mc->vocab_size, D = mc->dim;
    size_t r0 = (size_t)b * Tb;
    put(o, w->tokens + r0, sizeof(int32_t) * n);
    bl_topk_logprobs(w->ids, w->logp, w->logits + r0 * V, n - 1, V, K, c->tau);
    for (int t = 0; t + 1 < n; t++) {
        double psum = 0.0; /* as the top-K loss forms p_o */
        for (int k = 0; k < K; k++) psum += exp((double)w->logp[(size_t)t * K + k]);
        w->other[t] = psum < 1.0 ? (float)(1.0 - psum) : 0.0f;
    }
    put(o, w->ids, sizeof(int32_t) * (size_t)(n - 1) * K);
    put(o, w->logp, sizeof(float) * (size_t)(n - 1) * K);
    put(o, w->other, sizeof(float) * (size_t)(n - 1));
    for (int l = 0; c->hidden != BL_TRACE_HIDDEN_NONE && l < mc->n_layers; l++) {
        const float *h = w->hid + ((size_t)l * Bb * Tb + r0) * D;
        if (c->hidden == BL_TRACE_HIDDEN_F32) {
            put(o, h, sizeof(float) * (size_t)n * D);
        } else {
            for (size_t i = 0; i < (size_t)n * D; i++) w->h16[i] = bl_fp32_to_fp16(h[i]);
            put(o, w->h16, sizeof(uint16_t) * (size_t)n * D);
        }
    }
    pad8(o);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The trace into the open stream o; the header's checksum is patched later. */
static int write_all(Out *o, Work *w, const BlModel *m, const BlDataset *d,
                     const BlTraceConfig *c, BlTraceSummary *s, BlError *err) {
    const BlConfig *mc = &m->cfg;
    int N = d->n, B = c->batch < N ? c->batch : N, K = c->K;
    size_t hb = c->hidden == BL_TRACE_HIDDEN_F32 ? 4 : c->hidden == BL_TRACE_HIDDEN_F16 ? 2 : 0;
    if (!(w->n = bl_malloc(sizeof(int) * N, err))) return -1;
    int Tcap = 2;
    long long positions = 0, rows = 0;
    size_t bytes = TRACE_HEADER_BYTES + trace_table_bytes((size_t)N);
    for (int i = 0; i < N; i++) {
        int len;
        bl_dataset_example(d, i, &len, NULL);
        w->n[i] = len < c->seq ? len : c->seq;
        Tcap = w->n[i] > Tcap ? w->n[i] : Tcap;
        positions += w->n[i];
        rows += w->n[i] - 1;
        bytes += trace_record_bytes((size_t)w->n[i], (size_t)K, hb, (size_t)mc->n_layers,
                                    (size_t)mc->dim);
    }
    size_t M = (size_t)B * Tcap;
    const BlBackend *be = c->be ? c->be : bl_backend_cpu();
    if (bl_device_model_build(&w->dm, m, be, err)) return bl_fail_prefix(err, "trace: %s", be->name);
    w->have_dm = true;
    if (bl_build_forward_state(&w->fs, &w->dm.model, be, B, Tcap, true, err) ||
        (w->dm.uploaded &&
         !(w->host_logits = bl_malloc(sizeof(float) * M * mc->vocab_size, err))) ||
        !(w->tokens = bl_malloc(sizeof(int) * M, err)) ||
        !(w->lens = bl_malloc(sizeof(int) * B, err)) ||
        !(w->ids = bl_malloc(sizeof(int) * Tcap * K, err)) ||
        !(w->logp = bl_malloc(sizeof(float) * Tcap * K, err)) ||
        !(w->other = bl_malloc(sizeof(float) * Tcap, err)) ||
        (hb && !(w->hid = bl_malloc(sizeof(float) * mc->n_layers * M * mc->dim, err))) ||
        (hb == 2 && !(w->h16 = bl_malloc(sizeof(uint16_t) * Tcap * mc->dim, err))))
        return -1;
    s->records = N;
    s->positions = positions;
    s->rows = rows;
    s->bytes = bytes;
    unsigned char h[TRACE_HEADER_BYTES];
    fill_header(h, m, c, N, positions, rows, bytes, s);
    put(o, h, sizeof h);
    for (int i = 0; i < N; i++) {
        uint32_t n = (uint32_t)w->n[i];
        put(o, &n, 4);
    }
    pad8(o);
    for (int e0 = 0; e0 < N && !o->failed; e0 += B) {
        int Bb = N - e0 < B ? N - e0 : B, Tb = 2;
        for (int b = 0; b < Bb; b++) Tb = w->n[e0 + b] > Tb ? w->n[e0 + b] : Tb;
        memset(w->tokens, 0, sizeof(int) * (size_t)Bb * Tb);
        for (int b = 0; b < Bb; b++) {
            int len;
            const int *ids = bl_dataset_example(d, e0 + b, &len, NULL);
            w->lens[b] = w->n[e0 + b];
            memcpy(w->tokens + (size_t)b * Tb, ids, sizeof(int) * w->lens[b]);
        }
        float *hid[mc->n_layers];
        for (int l = 0; hb && l < mc->n_layers; l++)
            hid[l] = w->hid + (size_t)l * Bb * Tb * mc->dim;
        /* on a device bl_forward also forms the logits and reads them back;
         * on the CPU they are read where they are (the backend's memory is
         * the host's) */
        if (bl_forward(&w->fs, w->tokens, w->lens, NULL, Bb, Tb, w->host_logits, hb ? hid : NULL,
                       err))
            return bl_fail_prefix(err, "trace: teacher forward of examples %d..%d", e0 + 1,
                                  e0 + Bb);
        if (!w->host_logits) bl_forward_logits(&w->fs, 0, Bb * Tb);
        w->logits = w->host_logits ? w->host_logits : w->fs.logits;
        for (int b = 0; b < Bb; b++) write_record(o, w, m, c, b, Tb, Bb);
        if (c->progress) c->progress(c->progress_ctx, e0 + Bb, N);
    }
    if (o->failed) return bl_fail(err, "write failed: %s", strerror(o->failed));
    if (o->written != bytes)
        return bl_fail(err, "trace: wrote %zu bytes, the layout says %zu", o->written, bytes);
    return 0;
}

int bl_trace_write(const BlModel *m, const BlDataset *d, const BlTraceConfig *c, const char *path,
                   BlTraceSummary *out, BlError *err) {
    BlTraceSummary s = {0};
    if (check_config(m, d, c, err)) return -1;
    double t0 = now_s();
    if (bl_sha256_path(m->path, s.model_sha256, err)) return bl_fail_prefix(err, "trace: model");
    bl_trace_data_sha256(d, s.data_sha256);
    size_t pl = strlen(path);
    char *tmp = bl_malloc(pl + 5, err);
    if (!tmp) return -1;
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    Out o = {.f = fopen(tmp, "wb+")};
    if (!o.f) {
        int rc = bl_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    bl_sha256_init(&o.sum);
    Work w;
    memset(&w, 0, sizeof w);
    int rc = write_all(&o, &w, m, d, c, &s, err);
    free_work(&w);
    if (rc == 0) { /* the checksum covers the file with its own 32 bytes zero */
        unsigned char digest[32];
        bl_sha256_final(&o.sum, digest, NULL);
        if (fseek(o.f, TH_CHECKSUM, SEEK_SET) != 0 || fwrite(digest, 1, 32, o.f) != 32 ||
            fflush(o.f) != 0)
            rc = bl_fail(err, "%s: write failed: %s", tmp, strerror(errno));
    }
    if (fclose(o.f) != 0 && rc == 0)
        rc = bl_fail(err, "%s: write failed: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = bl_fail(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (rc) {
        remove(tmp);
        if (err && !strstr(err->msg, path)) bl_fail_prefix(err, "%s", path);
    }
    free(tmp);
    s.seconds = now_s() - t0;
    if (rc == 0 && out) *out = s;
    return rc;
}
