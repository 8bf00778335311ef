/* ops_backward.c - the backward half of ops.h: one function per forward op.
 *
 * Contract (ops.h): parameter gradients (dw, db, dg, dtable) accumulate,
 * input gradients (dx, dq, dk, dv, dgate, dup) are overwritten, NULL skips.
 * Beyond ops.h: bl_rmsnorm_backward and bl_rope_backward are safe in place
 * (dx may alias dy), which BitLinear's SubLN relies on. */
#include "ops/ops.h"

#include <cblas.h>
#include <math.h>
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
// attention: from the saved probabilities P (causal, valid rows only),
// dP = dout·vᵀ, dS = P ⊙ (dP − Σ_s P·dP), dq = dS·k/√hd, dk = dSᵀ·q/√hd, dv = Pᵀ·dout.
// Query rows t ≥ len are padding: zero output, so they contribute nothing and
// get dq = 0; key rows t ≥ len are only seen by padded queries, so dk = dv = 0.

void bl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                           const float *q, const float *k, const float *v, const int *lens,
                           int B, int T, int nh, int nkv, int hd) {
    size_t qs = (size_t)nh * hd, ks = (size_t)nkv * hd; /* row strides */
    if (dq) memset(dq, 0, sizeof(float) * B * T * qs);
    if (dk) memset(dk, 0, sizeof(float) * B * T * ks);
    if (dv) memset(dv, 0, sizeof(float) * B * T * ks);
    int group = nh / nkv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++) {
        int len = lens[b] < T ? lens[b] : T;
        for (int h = 0; h < nh; h++) {
            int kh = h / group;
            for (int t = 0; t < len; t++) {
                const float *p = att + (((size_t)b * nh + h) * T + t) * T;
                const float *dor = dout + ((size_t)b * T + t) * qs + (size_t)h * hd;
                const float *qr = q + ((size_t)b * T + t) * qs + (size_t)h * hd;
                float *dqr = dq ? dq + ((size_t)b * T + t) * qs + (size_t)h * hd : NULL;
                /* Σ_s P·dP, with dP[s] = dout·v[s] */
                double pdp = 0.0;
                for (int s = 0; s <= t; s++) {
                    const float *vr = v + ((size_t)b * T + s) * ks + (size_t)kh * hd;
                    float dp = 0.0f;
                    for (int i = 0; i < hd; i++) dp += dor[i] * vr[i];
                    pdp += (double)p[s] * dp;
                }
                for (int s = 0; s <= t; s++) {
                    size_t kvo = ((size_t)b * T + s) * ks + (size_t)kh * hd;
                    const float *vr = v + kvo, *kr = k + kvo;
                    float dp = 0.0f;
                    for (int i = 0; i < hd; i++) dp += dor[i] * vr[i];
                    float ds = p[s] * (dp - (float)pdp) * scale;
                    if (dqr)
                        for (int i = 0; i < hd; i++) dqr[i] += ds * kr[i];
                    if (dk)
                        for (int i = 0; i < hd; i++) dk[kvo + i] += ds * qr[i];
                    if (dv)
                        for (int i = 0; i < hd; i++) dv[kvo + i] += p[s] * dor[i];
                }
            }
        }
    }
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

// ----------------------------------------------------------------------------
// embed: scatter-add each row's gradient into its token's table row

void bl_embed_backward(float *dtable, const float *dy, const int *ids, int M, int D) {
    if (!dtable) return;
    for (int m = 0; m < M; m++) {
        float *tr = dtable + (size_t)ids[m] * D;
        const float *dr = dy + (size_t)m * D;
        for (int i = 0; i < D; i++) tr[i] += dr[i];
    }
}
