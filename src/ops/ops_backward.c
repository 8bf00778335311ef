/* ops_backward.c - the backward half of ops.h: one function per forward op.
 *
 * Contract (ops.h): parameter gradients (dw, db, dg) accumulate,
 * input gradients (dx, dq, dk, dv, dgate, dup) are overwritten, NULL skips.
 * Beyond ops.h: bl_rmsnorm_backward and bl_rope_backward are safe in place
 * (dx may alias dy), which BitLinear's SubLN relies on. */
/* The bl_expf loops (core/vmath.h) vectorise only without -ftrapping-math:
 * gcc will not if-convert its clamps while a comparison may raise FE_INVALID.
 * No result depends on the floating-point exception flags, and the vector
 * loops do the same float operations as the scalar ones, bit for bit. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/vmath.h"
#include "ops/gemm.h"
#include "ops/parallel.h"

// ----------------------------------------------------------------------------
// matmul

void bl_matmul_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int M, int N, int K) {
    if (dx) /* dx[M,K] = dy[M,N] · w[N,K] */
        bl_gemm(false, false, M, K, N, 1.0f, dy, N, w, K, 0.0f, dx, K);
    if (dw) /* dw[N,K] += dy[M,N]ᵀ · x[M,K] */
        bl_gemm(true, false, N, K, M, 1.0f, dy, N, x, K, 1.0f, dw, K);
    if (db)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) db[n] += dy[(size_t)m * N + n];
}

// ----------------------------------------------------------------------------
// rmsnorm: y = x·r·g with r = 1/rms(x), so dx = r·(dy·g − x̂·mean(dy·g·x̂)), x̂ = x·r

typedef struct {
    float *dx, *dg;
    const float *dy, *x, *g, *rstd;
    int M, D;
} RmsBackJob;

/* dg[i] += Σ_m dy·x̂ over all rows, in row order, for columns i0..i1 */
static void rmsnorm_dg_cols(void *ctx, long i0, long i1) {
    const RmsBackJob *j = ctx;
    for (int m = 0; m < j->M; m++) {
        const float *xr = j->x + (size_t)m * j->D, *dyr = j->dy + (size_t)m * j->D;
        float r = j->rstd[m];
        for (long i = i0; i < i1; i++) j->dg[i] += dyr[i] * (xr[i] * r);
    }
}

static void rmsnorm_dx_rows(void *ctx, long m0, long m1) {
    const RmsBackJob *j = ctx;
    int D = j->D;
    const float *g = j->g;
    for (long m = m0; m < m1; m++) {
        const float *xr = j->x + (size_t)m * D, *dyr = j->dy + (size_t)m * D;
        float r = j->rstd[m];
        double dot = 0.0; /* Σ dy·g·x̂, read fully before dx (which may alias dy) is written */
        for (int i = 0; i < D; i++) dot += (double)dyr[i] * g[i] * (xr[i] * r);
        float c = (float)(dot / D);
        float *dxr = j->dx + (size_t)m * D;
        for (int i = 0; i < D; i++) dxr[i] = r * (dyr[i] * g[i] - xr[i] * r * c);
    }
}

/* dg first (by columns, each summed over the rows in order, as one thread
 * would), then dx by rows: dx may alias dy, which dg still reads */
void bl_rmsnorm_backward(float *dx, float *dg, const float *dy, const float *x, const float *g,
                         const float *rstd, int M, int D) {
    RmsBackJob j = {.dx = dx, .dg = dg, .dy = dy, .x = x, .g = g, .rstd = rstd, .M = M, .D = D};
    if (dg) bl_parallel_for(D, (long)M * D, rmsnorm_dg_cols, &j);
    if (dx) bl_parallel_for(M, (long)M * D, rmsnorm_dx_rows, &j);
}

// ----------------------------------------------------------------------------
// attention: from the saved probabilities P (causal, valid rows only), per
// (sequence, head) GEMMs over blocks of query rows (one block of all L rows
// unless L·L floats exceed the scratch):
//   dP = dout·vᵀ, dS = P ⊙ (dP − Σ_s P·dP) / √hd,
//   dq = dS·k, dk += dSᵀ·q, dv += Pᵀ·dout   (GQA: the heads of a group sum into dk, dv).
// P is 0 above the diagonal and so is dS: causality needs no masks, and the
// queries t0..t0+n reach keys 0..t0+n only. Query rows t ≥ len are padding:
// zero output, so they contribute nothing and get dq = 0; key rows t ≥ len
// are only seen by padded queries, so dk = dv = 0. With doc_start each
// document of a row is its own sequence (its rows, its diagonal block of P):
// nothing flows between documents.

enum { ATT_SCRATCH = 1 << 20, ATT_STACK = 16384 }; /* floats of dS per block */

/* One (sequence, head): the pointers are at row 0 of the sequence and the
 * head's columns; dp is scratch of rows·L floats. */
static void attention_backward_head(float *dq, float *dk, float *dv, const float *dout,
                                    const float *P, const float *q, const float *k,
                                    const float *v, int L, int T, int qs, int ks, float scale,
                                    int hd, float *dp, int rows) {
    for (int t0 = 0; t0 < L; t0 += rows) {
        int n = L - t0 < rows ? L - t0 : rows, kk = t0 + n; /* keys 0..kk */
        const float *dob = dout + (size_t)t0 * qs, *pb = P + (size_t)t0 * T;
        if (dv) /* dv[kk, hd] += Pᵀ·dout */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, hd, n, 1.0f, pb, T, dob, qs,
                        1.0f, dv, ks);
        if (!dq && !dk) continue;
        /* dP[n, kk] = dout·vᵀ, then dS in place */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, kk, hd, 1.0f, dob, qs, v, ks, 0.0f,
                    dp, kk);
        for (int i = 0; i < n; i++) {
            const float *pr = pb + (size_t)i * T;
            float *dr = dp + (size_t)i * kk;
            int t = t0 + i;
            double pdp = 0.0; /* Σ_s P·dP */
            for (int s = 0; s <= t; s++) pdp += (double)pr[s] * dr[s];
            float c = (float)pdp;
            for (int s = 0; s <= t; s++) dr[s] = pr[s] * (dr[s] - c) * scale;
            for (int s = t + 1; s < kk; s++) dr[s] = 0.0f;
        }
        if (dq) /* dq[n, hd] = dS·k */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, kk, 1.0f, dp, kk, k, ks,
                        0.0f, dq + (size_t)t0 * qs, qs);
        if (dk) /* dk[kk, hd] += dSᵀ·q */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, hd, n, 1.0f, dp, kk,
                        q + (size_t)t0 * qs, qs, 1.0f, dk, ks);
    }
}

typedef struct {
    float *dq, *dk, *dv;
    const float *dout, *att, *q, *k, *v;
    const int *lens, *doc_start;
    int T, nh, nkv, hd, rows;
} AttBackJob;

/* items are (sequence, kv group) pairs: a group's heads add into the same
 * dk, dv rows, so they stay on one thread, in head order */
static void attention_backward_groups(void *ctx, long i0, long i1) {
    const AttBackJob *j = ctx;
    int T = j->T, nh = j->nh, hd = j->hd, group = nh / j->nkv;
    size_t qs = (size_t)nh * hd, ks = (size_t)j->nkv * hd; /* row strides */
    float scale = 1.0f / sqrtf((float)hd);
    /* dS of a block of rows: on the heap, or if that fails on the stack as
     * bl_attention's scores (about 64 KiB of rows, at least one) */
    int rows = j->rows;
    float *heap = malloc(sizeof(float) * (size_t)rows * T);
    if (!heap) rows = T >= ATT_STACK ? 1 : ATT_STACK / T;
    float stack[heap ? 1 : (size_t)rows * T];
    float *dp = heap ? heap : stack;
    for (long i = i0; i < i1; i++) {
        int b = (int)(i / j->nkv), g = (int)(i % j->nkv);
        int len = j->lens[b] < T ? j->lens[b] : T;
        const int *ds = j->doc_start ? j->doc_start + (size_t)b * T : NULL;
        for (int s = 0, e; s < len; s = e) {
            e = bl_doc_end(ds, s, len);
            for (int h = g * group; h < (g + 1) * group; h++) {
                size_t qo = ((size_t)b * T + s) * qs + (size_t)h * hd;
                size_t ko = ((size_t)b * T + s) * ks + (size_t)g * hd;
                const float *P = j->att + ((size_t)b * nh + h) * T * T + (size_t)s * T + s;
                attention_backward_head(j->dq ? j->dq + qo : NULL, j->dk ? j->dk + ko : NULL,
                                        j->dv ? j->dv + ko : NULL, j->dout + qo, P, j->q + qo,
                                        j->k + ko, j->v + ko, e - s, T, (int)qs, (int)ks, scale,
                                        hd, dp, rows);
            }
        }
    }
    free(heap);
}

void bl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                           const float *q, const float *k, const float *v, const int *lens,
                           const int *doc_start, int B, int T, int nh, int nkv, int hd) {
    size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd; /* row strides */
    if (dq) memset(dq, 0, sizeof(float) * B * T * qs);
    if (dk) memset(dk, 0, sizeof(float) * B * T * ks);
    if (dv) memset(dv, 0, sizeof(float) * B * T * ks);
    if ((!dq && !dk && !dv) || B <= 0 || T <= 0) return;
    /* all T rows in one block if T·T floats fit ATT_SCRATCH */
    int rows = (size_t)T * T <= ATT_SCRATCH ? T : (int)(ATT_SCRATCH / T > 0 ? ATT_SCRATCH / T : 1);
    AttBackJob j = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .att = att, .q = q, .k = k,
                    .v = v, .lens = lens, .doc_start = doc_start, .T = T, .nh = nh, .nkv = nkv,
                    .hd = hd, .rows = rows};
    bl_parallel_for((long)B * nkv, (long)B * nh * T * T * hd, attention_backward_groups, &j);
}

// ----------------------------------------------------------------------------
// swiglu: y = silu(g)·u, silu'(g) = σ(g)·(1 + g·(1 − σ(g)))

typedef struct {
    float *dgate, *dup;
    const float *dy, *gate, *up;
    int H, ld;
} SwigluBackJob;

static void swiglu_backward_rows(void *ctx, long m0, long m1) {
    const SwigluBackJob *c = ctx;
    int H = c->H, ld = c->ld;
    for (long m = m0; m < m1; m++) {
        const float *g = c->gate + (size_t)m * ld, *u = c->up + (size_t)m * ld;
        const float *d = c->dy + (size_t)m * H;
        float *dg = c->dgate ? c->dgate + (size_t)m * ld : NULL;
        float *du = c->dup ? c->dup + (size_t)m * ld : NULL;
        /* the tests are loop-invariant: -O3 unswitches them and vectorises */
        for (int j = 0; j < H; j++) {
            float sg = 1.0f / (1.0f + bl_expf(-g[j]));
            if (dg) dg[j] = d[j] * u[j] * sg * (1.0f + g[j] * (1.0f - sg));
            if (du) du[j] = d[j] * g[j] * sg;
        }
    }
}

void bl_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate,
                        const float *up, int M, int H, int ld) {
    SwigluBackJob c = {.dgate = dgate, .dup = dup, .dy = dy, .gate = gate, .up = up, .H = H,
                       .ld = ld};
    bl_parallel_for(M, (long)M * H * 8, swiglu_backward_rows, &c);
}
