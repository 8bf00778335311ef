/* ops_forward.c - the CPU forward of every op in ops.h (the backwards live
 * in their own file), plus the KV-cache attention of ops/ops_decode.h.
 *
 * Matrix products go to OpenBLAS; everything else is a plain loop. Sums that
 * decide accuracy (rms, rope angles) are taken in double so the CPU path can
 * serve as the reference the GPU backend is checked against. */
/* The bl_expf loops (core/vmath.h) vectorise only without -ftrapping-math:
 * gcc will not if-convert its clamps while a comparison may raise FE_INVALID.
 * No result depends on the floating-point exception flags, and the vector
 * loops do the same float operations as the scalar ones, bit for bit. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "ops/ops.h"
#include "ops/ops_decode.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "core/vmath.h"

// ----------------------------------------------------------------------------
// matmul

void bl_matmul(float *y, const float *x, const float *w, const float *bias, int M, int N, int K) {
    if (M <= 0 || N <= 0) return;
    float beta = 0.0f;
    if (bias) {
        for (int m = 0; m < M; m++) memcpy(y + (size_t)m * N, bias, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, beta, y, N);
}

// ----------------------------------------------------------------------------
// rmsnorm

void bl_rmsnorm(float *y, float *rstd, const float *x, const float *g, int M, int D, float eps) {
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * D;
        float *yr = y + (size_t)m * D;
        double ss = 0.0;
        for (int i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / D + (double)eps));
        for (int i = 0; i < D; i++) yr[i] = xr[i] * r * g[i];
        if (rstd) rstd[m] = r;
    }
}

// ----------------------------------------------------------------------------
// rope

void bl_rope(float *x, const int *pos, int M, int n_heads, int head_dim, float theta,
             bool interleaved) {
    int half = head_dim / 2;
    int row = n_heads * head_dim;
    /* the frequencies depend on i only: one pow each, not one per row */
    double freq[half > 0 ? half : 1];
    for (int i = 0; i < half; i++) freq[i] = pow((double)theta, -2.0 * i / head_dim);
    for (int m = 0; m < M; m++) {
        float *xr = x + (size_t)m * row;
        for (int i = 0; i < half; i++) {
            /* the angle in double: pos·θ^(-2i/hd) reaches thousands of radians,
             * where a float angle would lose the 1e-4 parity */
            double ang = pos[m] * freq[i];
            float c = (float)cos(ang), s = (float)sin(ang);
            int i0 = interleaved ? 2 * i : i;
            int i1 = interleaved ? 2 * i + 1 : i + half;
            for (int h = 0; h < n_heads; h++) {
                float *xh = xr + h * head_dim;
                float a = xh[i0], b = xh[i1];
                xh[i0] = a * c - b * s;
                xh[i1] = a * s + b * c;
            }
        }
    }
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

void bl_attention(float *out, float *att, const float *q, const float *k, const float *v,
                  const int *lens, int B, int T, int nh, int nkv, int hd) {
    int qd = nh * hd, kvd = nkv * hd, group = nh / nkv;
    if (att) memset(att, 0, (size_t)B * nh * T * T * sizeof(float));
    for (int b = 0; b < B; b++) {
        int L = lens[b];
        size_t r0 = (size_t)b * T;
        /* padded query rows produce zeros; the valid ones never reach a padded
         * key because causality stops them at their own position < L */
        for (int t = L; t < T; t++) memset(out + (r0 + t) * qd, 0, (size_t)qd * sizeof(float));
        if (L <= 0) continue;
        for (int h = 0; h < nh; h++) {
            int g = h / group;
            float *o = out + r0 * qd + h * hd;
            const float *qh = q + r0 * qd + h * hd;
            const float *kh = k + r0 * kvd + g * hd, *vh = v + r0 * kvd + g * hd;
            if (att)
                attend_head(o, qd, qh, qd, kh, vh, kvd, L, L, 0, hd,
                            att + ((size_t)b * nh + h) * T * T, T);
            else
                attend_head_chunked(o, qd, qh, qd, kh, vh, kvd, L, L, 0, hd);
        }
    }
}

void bl_attention_kv(float *out, const float *q, const float *kcache, const float *vcache, int n,
                     int pos0, int nh, int nkv, int hd) {
    int qd = nh * hd, kvd = nkv * hd, group = nh / nkv;
    for (int h = 0; h < nh; h++) {
        int g = h / group;
        attend_head_chunked(out + h * hd, qd, q + h * hd, qd, kcache + g * hd, vcache + g * hd,
                            kvd, n, pos0 + n, pos0, hd);
    }
}

// ----------------------------------------------------------------------------
// swiglu

void bl_swiglu(float *y, const float *gate, const float *up, int M, int H, int ld) {
    for (int m = 0; m < M; m++) {
        const float *g = gate + (size_t)m * ld, *u = up + (size_t)m * ld;
        float *yr = y + (size_t)m * H;
        for (int i = 0; i < H; i++) yr[i] = g[i] / (1.0f + bl_expf(-g[i])) * u[i];
    }
}

// ----------------------------------------------------------------------------
// embed

void bl_embed(float *y, const float *table, const int *ids, int M, int D) {
    for (int m = 0; m < M; m++)
        memcpy(y + (size_t)m * D, table + (size_t)ids[m] * D, (size_t)D * sizeof(float));
}
