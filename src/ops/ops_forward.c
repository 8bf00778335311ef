/* ops_forward.c - the CPU forward of every op in ops.h (the backwards live
 * in their own file), plus the KV-cache attention of ops/ops_decode.h.
 *
 * Matrix products go to bl_gemm (ops/gemm.h); the per-row loops are split
 * over the worker pool (ops/parallel.h) by rows, (sequence, head) pairs or
 * positions, each computed exactly as alone. Sums that decide accuracy (the
 * rms) are taken in double so the CPU path can serve as the reference the GPU
 * backend is checked against. */
/* SwiGLU's bl_expf loop is built with the default -ftrapping-math, unlike
 * the softmax loops of loss.c: without it gcc evaluates the quotient for
 * bl_expf's clamped constant (g / (1 + e^88)) on every lane and blends, and
 * those speculative quotients are subnormal for ordinary |g|, each costing a
 * microcode assist: 3.5 ms instead of 0.5 ms for 512 x 1536 on AVX-512, and
 * slower than scalar code on AVX2. */
#include "ops/ops.h"
#include "ops/ops_decode.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/vmath.h"
#include "ops/gemm.h"
#include "ops/parallel.h"

// ----------------------------------------------------------------------------
// matmul

void bl_matmul(float *y, const float *x, const float *w, const float *bias, int M, int N, int K) {
    if (M <= 0 || N <= 0) return;
    float beta = 0.0f;
    if (bias) {
        for (int m = 0; m < M; m++) memcpy(y + (size_t)m * N, bias, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    bl_gemm(false, true, M, N, K, 1.0f, x, K, w, K, beta, y, N);
}

// ----------------------------------------------------------------------------
// rmsnorm

typedef struct {
    float *y, *rstd;
    const float *x, *g;
    int D;
    float eps;
} RmsJob;

static void rmsnorm_rows(void *ctx, long m0, long m1) {
    const RmsJob *j = ctx;
    float *y = j->y, *rstd = j->rstd;
    const float *x = j->x, *g = j->g;
    int D = j->D;
    float eps = j->eps;
    for (long m = m0; m < m1; m++) {
        const float *xr = x + (size_t)m * D;
        float *yr = y + (size_t)m * D;
        double ss = 0.0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / D + (double)eps));
        for (int i = 0; i < D; i++) yr[i] = xr[i] * r * g[i];
        if (rstd) rstd[m] = r;
    }
}

void bl_rmsnorm(float *y, float *rstd, const float *x, const float *g, int M, int D, float eps) {
    RmsJob j = {.y = y, .rstd = rstd, .x = x, .g = g, .D = D, .eps = eps};
    bl_parallel_for(M, (long)M * D, rmsnorm_rows, &j);
}

// ----------------------------------------------------------------------------
// attention

/* Softmax of the causal part of each score row, zeroing the rest. Row i is
 * the query at position pos0 + i and sees keys 0..min(pos0 + i, nk - 1). */
static void causal_softmax(float *S, int lds, int nq, int nk, int pos0) {
    for (int i = 0; i < nq; i++) {
        float *r = S + (size_t)i * lds;
        int n = pos0 + i + 1 < nk ? pos0 + i + 1 : nk;
        float mx = r[0];
        for (int j = 1; j < n; j++) mx = r[j] > mx ? r[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            r[j] = expf(r[j] - mx);
            sum += r[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) r[j] *= inv;
        for (int j = n; j < nk; j++) r[j] = 0.0f;
    }
}

/* One (sequence, head): out[nq, hd] = softmax(q·kᵀ/√hd, causal)·v for nq
 * queries at positions pos0.. against nk keys. S[nq, lds] holds the scores and
 * then the probabilities. */
static void attend_head(float *out, int ldo, const float *q, int ldq, const float *k,
                        const float *v, int ldkv, int nq, int nk, int pos0, int hd, float *S,
                        int lds) {
    float scale = 1.0f / sqrtf((float)hd);
    /* within a head: the caller parallelises over heads */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, q, ldq, k, ldkv,
                0.0f, S, lds);
    causal_softmax(S, lds, nq, nk, pos0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S, lds, v, ldkv,
                0.0f, out, ldo);
}

/* Without a caller buffer, the scores of a block of queries live on the
 * stack: at least one full row, else about 64 KiB worth of rows. */
enum { STACK_SCORES = 16384 };

static void attend_head_chunked(float *out, int ldo, const float *q, int ldq, const float *k,
                                const float *v, int ldkv, int nq, int nk, int pos0, int hd) {
    if (nq <= 0) return;
    int rows = nk >= STACK_SCORES ? 1 : STACK_SCORES / nk;
    if (rows > nq) rows = nq;
    float S[(size_t)rows * nk];
    for (int i0 = 0; i0 < nq; i0 += rows) {
        int n = nq - i0 < rows ? nq - i0 : rows;
        /* a block's queries see at most pos0 + i0 + n keys: skip the rest */
        int kk = pos0 + i0 + n < nk ? pos0 + i0 + n : nk;
        attend_head(out + (size_t)i0 * ldo, ldo, q + (size_t)i0 * ldq, ldq, k, v, ldkv, n, kk,
                    pos0 + i0, hd, S, kk);
    }
}

typedef struct {
    float *out, *att;
    const float *q, *k, *v;
    const int *lens, *doc_start;
    int T, nh, nkv, hd;
} AttJob;

/* items are (sequence, head) pairs, b·nh + h; each document of the row is
 * attended as a sequence of its own (rows s..e, its probabilities the
 * [s..e) x [s..e) block of the row's T x T) */
static void attention_heads(void *ctx, long i0, long i1) {
    const AttJob *j = ctx;
    int T = j->T, nh = j->nh, hd = j->hd, qd = nh * hd, kvd = j->nkv * hd, group = nh / j->nkv;
    for (long i = i0; i < i1; i++) {
        int b = (int)(i / nh), h = (int)(i % nh), g = h / group, L = j->lens[b];
        size_t r0 = (size_t)b * T;
        const int *ds = j->doc_start ? j->doc_start + r0 : NULL;
        for (int s = 0, e; s < L; s = e) {
            e = bl_doc_end(ds, s, L);
            int n = e - s;
            float *o = j->out + (r0 + s) * qd + h * hd;
            const float *qh = j->q + (r0 + s) * qd + h * hd;
            const float *kh = j->k + (r0 + s) * kvd + g * hd, *vh = j->v + (r0 + s) * kvd + g * hd;
            if (j->att)
                attend_head(o, qd, qh, qd, kh, vh, kvd, n, n, 0, hd,
                            j->att + (size_t)i * T * T + (size_t)s * T + s, T);
            else
                attend_head_chunked(o, qd, qh, qd, kh, vh, kvd, n, n, 0, hd);
        }
    }
}

int bl_doc_start_check(const int *doc_start, const int *lens, int B, int T, BlError *err) {
    for (int b = 0; b < B; b++) {
        const int *ds = doc_start + (size_t)b * T;
        int L = lens[b] < T ? lens[b] : T;
        for (int t = 0; t < L; t++)
            if (ds[t] != t && (t == 0 || ds[t] != ds[t - 1]))
                return bl_fail(err, "doc_start[%d] = %d at [%d, %d] is neither %d nor the entry "
                               "before it", b * T + t, ds[t], b, t, t);
    }
    return 0;
}

void bl_attention(float *out, float *att, const float *q, const float *k, const float *v,
                  const int *lens, const int *doc_start, int B, int T, int nh, int nkv, int hd) {
    int qd = nh * hd;
    if (att) memset(att, 0, (size_t)B * nh * T * T * sizeof(float));
    /* padded query rows produce zeros; the valid ones never reach a padded
     * key because causality stops them at their own position < L (and a
     * document's queries never reach past its last row) */
    for (int b = 0; b < B; b++)
        for (int t = lens[b] > 0 ? lens[b] : 0; t < T; t++)
            memset(out + ((size_t)b * T + t) * qd, 0, (size_t)qd * sizeof(float));
    AttJob j = {.out = out, .att = att, .q = q, .k = k, .v = v, .lens = lens,
                .doc_start = doc_start, .T = T, .nh = nh, .nkv = nkv, .hd = hd};
    bl_parallel_for((long)B * nh, (long)B * nh * T * T * hd, attention_heads, &j);
}

typedef struct {
    float *out;
    const float *q, *kcache, *vcache;
    int n, pos0, nh, nkv, hd;
} AttKvJob;

static void attention_kv_heads(void *ctx, long h0, long h1) {
    const AttKvJob *j = ctx;
    int qd = j->nh * j->hd, kvd = j->nkv * j->hd, group = j->nh / j->nkv;
    for (long h = h0; h < h1; h++) {
        int g = (int)h / group;
        attend_head_chunked(j->out + h * j->hd, qd, j->q + h * j->hd, qd, j->kcache + g * j->hd,
                            j->vcache + g * j->hd, kvd, j->n, j->pos0 + j->n, j->pos0, j->hd);
    }
}

void bl_attention_kv(float *out, const float *q, const float *kcache, const float *vcache, int n,
                     int pos0, int nh, int nkv, int hd) {
    AttKvJob j = {.out = out, .q = q, .kcache = kcache, .vcache = vcache, .n = n, .pos0 = pos0,
                  .nh = nh, .nkv = nkv, .hd = hd};
    bl_parallel_for(nh, (long)nh * n * (pos0 + n) * hd, attention_kv_heads, &j);
}

// ----------------------------------------------------------------------------
// swiglu

typedef struct {
    float *y;
    const float *gate, *up;
    int H, ld;
} SwigluJob;

static void swiglu_rows(void *ctx, long m0, long m1) {
    const SwigluJob *j = ctx;
    int H = j->H;
    for (long m = m0; m < m1; m++) {
        const float *g = j->gate + (size_t)m * j->ld, *u = j->up + (size_t)m * j->ld;
        float *yr = j->y + (size_t)m * H;
        for (int i = 0; i < H; i++) yr[i] = g[i] / (1.0f + bl_expf(-g[i])) * u[i];
    }
}

void bl_swiglu(float *y, const float *gate, const float *up, int M, int H, int ld) {
    SwigluJob j = {.y = y, .gate = gate, .up = up, .H = H, .ld = ld};
    bl_parallel_for(M, (long)M * H * 8, swiglu_rows, &j);
}

// ----------------------------------------------------------------------------
// embed

void bl_embed(float *y, const float *table, const int *ids, int M, int D) {
    for (int m = 0; m < M; m++)
        memcpy(y + (size_t)m * D, table + (size_t)ids[m] * D, (size_t)D * sizeof(float));
}
