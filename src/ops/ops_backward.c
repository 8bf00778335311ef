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

// ----------------------------------------------------------------------------
// matmul

void bl_matmul_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int M, int N, int K) {
    if (dx) /* dx[M,K] = dy[M,N] · w[N,K] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dy, N, w, K,
                    0.0f, dx, K);
    if (dw) /* dw[N,K] += dy[M,N]ᵀ · x[M,K] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dy, N, x, K,
                    1.0f, dw, K);
    if (db)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) db[n] += dy[(size_t)m * N + n];
}

// ----------------------------------------------------------------------------
// rmsnorm: y = x·r·g with r = 1/rms(x), so dx = r·(dy·g − x̂·mean(dy·g·x̂)), x̂ = x·r

void bl_rmsnorm_backward(float *dx, float *dg, const float *dy, const float *x, const float *g,
                         const float *rstd, int M, int D) {
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * D, *dyr = dy + (size_t)m * D;
        float r = rstd[m];
        double dot = 0.0; /* Σ dy·g·x̂, read fully before dx (which may alias dy) is written */
        for (int i = 0; i < D; i++) {
            float xh = xr[i] * r;
            dot += (double)dyr[i] * g[i] * xh;
            if (dg) dg[i] += dyr[i] * xh;
        }
        if (!dx) continue;
        float c = (float)(dot / D);
        float *dxr = dx + (size_t)m * D;
        for (int i = 0; i < D; i++) dxr[i] = r * (dyr[i] * g[i] - xr[i] * r * c);
    }
}

// ----------------------------------------------------------------------------
// rope: the forward rotates each pair by +angle, so the gradient rotates by −angle

void bl_rope_backward(float *dx, const int *pos, int M, int n_heads, int head_dim, float theta,
                      bool interleaved) {
    int half = head_dim / 2;
    /* as the forward: one pow per frequency, not one per row */
    double freq[half > 0 ? half : 1];
    for (int i = 0; i < half; i++) freq[i] = pow((double)theta, -2.0 * i / head_dim);
    for (int m = 0; m < M; m++) {
        for (int i = 0; i < half; i++) {
            double ang = (double)pos[m] * freq[i];
            float c = (float)cos(ang), s = (float)sin(ang);
            for (int h = 0; h < n_heads; h++) {
                float *v = dx + (size_t)m * n_heads * head_dim + (size_t)h * head_dim;
                int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
                float g0 = v[a], g1 = v[b];
                v[a] = g0 * c + g1 * s;
                v[b] = -g0 * s + g1 * c;
            }
        }
    }
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
// are only seen by padded queries, so dk = dv = 0.

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

void bl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                           const float *q, const float *k, const float *v, const int *lens,
                           int B, int T, int nh, int nkv, int hd) {
    size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd; /* row strides */
    if (dq) memset(dq, 0, sizeof(float) * B * T * qs);
    if (dk) memset(dk, 0, sizeof(float) * B * T * ks);
    if (dv) memset(dv, 0, sizeof(float) * B * T * ks);
    if ((!dq && !dk && !dv) || B <= 0 || T <= 0) return;
    int group = nh / nkv;
    float scale = 1.0f / sqrtf((float)hd);
    /* dS of a block of rows: all T if T·T floats fit ATT_SCRATCH, on the heap;
     * if that allocation fails, on the stack as bl_attention's scores (about
     * 64 KiB of rows, at least one) */
    int rows = (size_t)T * T <= ATT_SCRATCH ? T : (int)(ATT_SCRATCH / T > 0 ? ATT_SCRATCH / T : 1);
    float *heap = malloc(sizeof(float) * (size_t)rows * T);
    if (!heap) rows = T >= ATT_STACK ? 1 : ATT_STACK / T;
    float stack[heap ? 1 : (size_t)rows * T];
    float *dp = heap ? heap : stack;
    for (int b = 0; b < B; b++) {
        int len = lens[b] < T ? lens[b] : T;
        if (len <= 0) continue;
        for (int h = 0; h < nh; h++) {
            size_t qo = (size_t)b * T * qs + (size_t)h * hd;
            size_t ko = (size_t)b * T * ks + (size_t)(h / group) * hd;
            attention_backward_head(dq ? dq + qo : NULL, dk ? dk + ko : NULL, dv ? dv + ko : NULL,
                                    dout + qo, att + ((size_t)b * nh + h) * T * T, q + qo, k + ko,
                                    v + ko, len, T, (int)qs, (int)ks, scale, hd, dp, rows);
        }
    }
    free(heap);
}

// ----------------------------------------------------------------------------
// swiglu: y = silu(g)·u, silu'(g) = σ(g)·(1 + g·(1 − σ(g)))

void bl_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate,
                        const float *up, int M, int H, int ld) {
    for (int m = 0; m < M; m++) {
        const float *g = gate + (size_t)m * ld, *u = up + (size_t)m * ld;
        const float *d = dy + (size_t)m * H;
        float *dg = dgate ? dgate + (size_t)m * ld : NULL;
        float *du = dup ? dup + (size_t)m * ld : NULL;
        /* the tests are loop-invariant: -O3 unswitches them and vectorises */
        for (int j = 0; j < H; j++) {
            float sg = 1.0f / (1.0f + bl_expf(-g[j]));
            if (dg) dg[j] = d[j] * u[j] * sg * (1.0f + g[j] * (1.0f - sg));
            if (du) du[j] = d[j] * g[j] * sg;
        }
    }
}
