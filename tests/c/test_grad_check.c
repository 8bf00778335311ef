/* test_grad_check.c - every backward of the training core against central
 * finite differences: the ops of ops/ops.h, BitLinear (with its STE
 * definition where quantisers make FD meaningless), the LoRA factors, every
 * loss, and AdamW against a two-step trajectory worked out by hand.
 *
 * Ops are checked through a scalar L = Σ y·R (R random), so dy = R. The ops
 * are float, so FD runs in float inputs with L summed in double: the step h is
 * divided by the step actually taken ((x+h) − (x−h) in float), and the
 * rounding of the forward (~6e-8 relative per output, a few hundred outputs)
 * over 2h = 2e-2 stays below ~1e-4, while truncation is O(h²) ~ 1e-4 for
 * these smooth ops; so |analytic − FD| <= 1e-3·(1 + |FD|) is a real check:
 * a wrong term moves gradients by O(0.1). The losses return double and sum
 * in double; they use the same tolerance. Sizes are odd and inputs seeded. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/adamw.h"
#include "bitlinear.h"
#include "train/lora.h"
#include "ops/loss.h"
#include "ops/quant.h"

#include "check.h"

#define FD_H 1e-2f
#define FD_TOL 1e-3

// ----------------------------------------------------------------------------
// helpers: seeded inputs, the FD driver, comparisons

static uint64_t rng = 0x5eed5eedull;
static float frand(void) { /* uniform in [−1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) * 0x1.0p-52 - 1.0);
}
static float *rnd(size_t n, float scale) {
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
    return x;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

static double dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*LossFn)(void);

/* Compares grad[i] with the central difference of f over x[i] for all i. */
static void fd_check(const char *name, float *x, const float *grad, size_t n, LossFn f) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i], xp = v + FD_H, xm = v - FD_H;
        x[i] = xp;
        double lp = f();
        x[i] = xm;
        double lm = f();
        x[i] = v;
        double fd = (lp - lm) / ((double)xp - xm);
        double e = fabs(grad[i] - fd) / (1.0 + fabs(fd));
        if (e > worst) worst = e;
        if (e > FD_TOL) {
            CHECK(0, "%s: grad[%zu] = %.6g, FD %.6g", name, i, grad[i], fd);
            return;
        }
    }
    printf("  %-28s n=%-4zu max err %.2e\n", name, n, worst);
}

static void expect_close(const char *name, const float *a, const float *b, size_t n, double tol) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (1.0 + fabs(b[i]));
        if (e > worst) worst = e;
    }
    CHECK(worst <= tol, "%s: max err %.3g > %.3g", name, worst, tol);
    printf("  %-28s n=%-4zu max err %.2e\n", name, n, worst);
}

// ----------------------------------------------------------------------------
// ops.h

static struct { /* the current op's inputs, read by its loss function */
    float *x, *w, *b, *g, *q, *k, *v, *up, *R, *y, *att;
    int *ids, *pos, *lens, *doc_start;
    int M, N, K, D, B, T, nh, nkv, hd, H, ld, inter;
} op;

static double loss_matmul(void) {
    bl_matmul(op.y, op.x, op.w, op.b, op.M, op.N, op.K);
    return dot(op.y, op.R, (size_t)op.M * op.N);
}

static void test_matmul(void) {
    int M = 5, N = 7, K = 3;
    op.M = M, op.N = N, op.K = K;
    op.x = rnd(M * K, 1), op.w = rnd(N * K, 1), op.b = rnd(N, 1), op.R = rnd(M * N, 1);
    op.y = zeros(M * N);
    float *dx = rnd(M * K, 1), *dw0 = rnd(N * K, 1), *db0 = rnd(N, 1); /* accumulate onto these */
    float *dw = malloc(sizeof(float) * N * K), *db = malloc(sizeof(float) * N);
    memcpy(dw, dw0, sizeof(float) * N * K);
    memcpy(db, db0, sizeof(float) * N);
    bl_matmul_backward(dx, dw, db, op.R, op.x, op.w, M, N, K);
    for (int i = 0; i < N * K; i++) dw[i] -= dw0[i];
    for (int i = 0; i < N; i++) db[i] -= db0[i];
    fd_check("matmul dx", op.x, dx, M * K, loss_matmul);
    fd_check("matmul dw (accumulated)", op.w, dw, N * K, loss_matmul);
    fd_check("matmul db (accumulated)", op.b, db, N, loss_matmul);
    free(op.x), free(op.w), free(op.b), free(op.R), free(op.y);
    free(dx), free(dw), free(db), free(dw0), free(db0);
}

static double loss_rmsnorm(void) {
    bl_rmsnorm(op.y, NULL, op.x, op.g, op.M, op.D, 1e-5f);
    return dot(op.y, op.R, (size_t)op.M * op.D);
}

static void test_rmsnorm(void) {
    int M = 3, D = 7;
    op.M = M, op.D = D;
    op.x = rnd(M * D, 1), op.g = rnd(D, 1), op.R = rnd(M * D, 1), op.y = zeros(M * D);
    float rstd[3], *dx = zeros(M * D), *dg = zeros(D), *dxa = malloc(sizeof(float) * M * D);
    bl_rmsnorm(op.y, rstd, op.x, op.g, M, D, 1e-5f);
    bl_rmsnorm_backward(dx, dg, op.R, op.x, op.g, rstd, M, D);
    fd_check("rmsnorm dx", op.x, dx, M * D, loss_rmsnorm);
    fd_check("rmsnorm dg", op.g, dg, D, loss_rmsnorm);
    memcpy(dxa, op.R, sizeof(float) * M * D); /* in place: dx == dy */
    bl_rmsnorm_backward(dxa, NULL, dxa, op.x, op.g, rstd, M, D);
    expect_close("rmsnorm dx in place", dxa, dx, M * D, 0.0);
    free(op.x), free(op.g), free(op.R), free(op.y), free(dx), free(dg), free(dxa);
}

static double loss_rope(void) {
    size_t n = (size_t)op.M * op.nh * op.hd;
    memcpy(op.y, op.x, sizeof(float) * n);
    bl_rope(op.y, op.pos, op.M, op.nh, op.hd, 10000.0f, op.inter);
    return dot(op.y, op.R, n);
}

static void test_rope(void) {
    int M = 5, nh = 3, hd = 6, pos[5] = {0, 3, 17, 250, 4093};
    op.M = M, op.nh = nh, op.hd = hd, op.pos = pos;
    size_t n = (size_t)M * nh * hd;
    op.x = rnd(n, 1), op.R = rnd(n, 1), op.y = zeros(n);
    float *dx = malloc(sizeof(float) * n);
    for (op.inter = 0; op.inter < 2; op.inter++) {
        memcpy(dx, op.R, sizeof(float) * n);
        bl_rope_backward(dx, pos, M, nh, hd, 10000.0f, op.inter);
        fd_check(op.inter ? "rope dx (interleaved)" : "rope dx (rotate-half)", op.x, dx, n,
                 loss_rope);
    }
    free(op.x), free(op.R), free(op.y), free(dx);
}

static double loss_attention(void) {
    bl_attention(op.y, NULL, op.q, op.k, op.v, op.lens, op.doc_start, op.B, op.T, op.nh, op.nkv,
                 op.hd);
    return dot(op.y, op.R, (size_t)op.B * op.T * op.nh * op.hd);
}

static void test_attention(void) {
    int B = 2, T = 5, nh = 4, nkv = 2, hd = 3, lens[2] = {5, 3};
    op.B = B, op.T = T, op.nh = nh, op.nkv = nkv, op.hd = hd, op.lens = lens;
    size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd;
    op.q = rnd(nq, 1), op.k = rnd(nk, 1), op.v = rnd(nk, 1), op.R = rnd(nq, 1), op.y = zeros(nq);
    float *att = zeros((size_t)B * nh * T * T);
    float *dq = rnd(nq, 1), *dk = rnd(nk, 1), *dv = rnd(nk, 1); /* overwritten, not summed */
    bl_attention(op.y, att, op.q, op.k, op.v, lens, NULL, B, T, nh, nkv, hd);
    bl_attention_backward(dq, dk, dv, op.R, att, op.q, op.k, op.v, lens, NULL, B, T, nh, nkv, hd);
    fd_check("attention dq", op.q, dq, nq, loss_attention);
    fd_check("attention dk (GQA sum)", op.k, dk, nk, loss_attention);
    fd_check("attention dv (GQA sum)", op.v, dv, nk, loss_attention);
    /* padded rows of sequence 1 (t = 3, 4) get exactly zero */
    for (int t = 3; t < 5; t++) {
        for (int i = 0; i < nh * hd; i++) CHECK(dq[(5 + t) * nh * hd + i] == 0.0f, "padded dq");
        for (int i = 0; i < nkv * hd; i++)
            CHECK(dk[(5 + t) * nkv * hd + i] == 0.0f && dv[(5 + t) * nkv * hd + i] == 0.0f,
                  "padded dk/dv");
    }
    free(op.q), free(op.k), free(op.v), free(op.R), free(op.y), free(att);
    free(dq), free(dk), free(dv);
}

/* Packed rows: row 0 holds documents [0, 3) [3, 4) [4, 7), row 1 [0, 2)
 * [2, 6) and a padded row 6 (its junk entry is not read). The backward is
 * checked against finite differences of the packed forward, and the
 * gradient of a document's output reaches no other document's q, k, v. */
static void test_attention_packed(void) {
    int B = 2, T = 7, nh = 4, nkv = 2, hd = 3, lens[2] = {7, 6};
    int ds[14] = {0, 0, 0, 3, 4, 4, 4, 0, 0, 2, 2, 2, 2, 99};
    op.B = B, op.T = T, op.nh = nh, op.nkv = nkv, op.hd = hd, op.lens = lens, op.doc_start = ds;
    size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd;
    op.q = rnd(nq, 1), op.k = rnd(nk, 1), op.v = rnd(nk, 1), op.R = rnd(nq, 1), op.y = zeros(nq);
    float *att = zeros((size_t)B * nh * T * T);
    float *dq = rnd(nq, 1), *dk = rnd(nk, 1), *dv = rnd(nk, 1);
    bl_attention(op.y, att, op.q, op.k, op.v, lens, ds, B, T, nh, nkv, hd);
    bl_attention_backward(dq, dk, dv, op.R, att, op.q, op.k, op.v, lens, ds, B, T, nh, nkv, hd);
    fd_check("packed attention dq", op.q, dq, nq, loss_attention);
    fd_check("packed attention dk", op.k, dk, nk, loss_attention);
    fd_check("packed attention dv", op.v, dv, nk, loss_attention);
    /* a probability across a document boundary is exactly 0 */
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < lens[b]; t++)
                for (int j = 0; j < T; j++) {
                    bool inside = j >= ds[b * T + t] && j <= t;
                    CHECK(inside || att[(((size_t)b * nh + h) * T + t) * T + j] == 0.0f,
                          "packed attention: row %d query %d sees key %d", b, t, j);
                }
    /* only row 0's last document carries an output gradient: every other
     * document's dq, dk, dv is exactly 0 */
    for (size_t i = 0; i < nq; i++) {
        size_t r = i / ((size_t)nh * hd);
        if (r < 4 || r >= 7) op.R[i] = 0.0f;
    }
    bl_attention_backward(dq, dk, dv, op.R, att, op.q, op.k, op.v, lens, ds, B, T, nh, nkv, hd);
    for (int r = 0; r < B * T; r++) {
        if (r >= 4 && r < 7) continue;
        for (int i = 0; i < nh * hd; i++) CHECK(dq[r * nh * hd + i] == 0.0f, "dq row %d", r);
        for (int i = 0; i < nkv * hd; i++)
            CHECK(dk[r * nkv * hd + i] == 0.0f && dv[r * nkv * hd + i] == 0.0f, "dk/dv row %d", r);
    }
    op.doc_start = NULL;
    free(op.q), free(op.k), free(op.v), free(op.R), free(op.y), free(att);
    free(dq), free(dk), free(dv);
}

static double loss_swiglu(void) {
    bl_swiglu(op.y, op.g, op.up, op.M, op.H, op.ld);
    return dot(op.y, op.R, (size_t)op.M * op.H);
}

static void test_swiglu(void) {
    /* Phi-3 layout: one [M, 2H] buffer, gate columns first, ld = 2H */
    int M = 3, H = 5, ld = 2 * H;
    op.M = M, op.H = H, op.ld = ld;
    float *gu = rnd(M * ld, 2), *dgu = rnd(M * ld, 1), *keep = malloc(sizeof(float) * M * ld);
    op.g = gu, op.up = gu + H, op.R = rnd(M * H, 1), op.y = zeros(M * H);
    memcpy(keep, dgu, sizeof(float) * M * ld);
    bl_swiglu_backward(dgu, dgu + H, op.R, op.g, op.up, M, H, ld);
    fd_check("swiglu dgate+dup (fused)", gu, dgu, M * ld, loss_swiglu);
    /* only the H columns each owns are written */
    float *dg2 = zeros(M * ld);
    bl_swiglu_backward(dg2, NULL, op.R, op.g, op.up, M, H, ld);
    for (int m = 0; m < M; m++)
        for (int j = H; j < ld; j++) CHECK(dg2[m * ld + j] == 0.0f, "dup skipped but written");
    free(gu), free(dgu), free(keep), free(op.R), free(op.y), free(dg2);
}

// ----------------------------------------------------------------------------
// LoRA and BitLinear

static struct {
    BlBitLinear L;
    BlLoraStack st;
    float *x, *y, *xq, *rstd, *R, *weff;
    int M;
} bl;

static double loss_bitlinear(void) {
    BlError err;
    if (bl_bitlinear_forward(bl.y, bl.xq, bl.rstd, bl.x, &bl.L, bl.M, bl.weff, &err)) return NAN;
    return dot(bl.y, bl.R, (size_t)bl.M * bl.L.out);
}

/* Weff by the definition, in double loops: (1−λ)·V + λ·wq(V), V = W + Σ s·B·A */
static void dense_weff(float *out, const BlBitLinear *L) {
    int O = L->out, I = L->in;
    double mean = 0.0;
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double v = L->w[o * I + i];
            for (int a = 0; a < L->lora->n; a++) {
                const BlLoraAdapter *ad = &L->lora->ad[a];
                for (int j = 0; j < ad->r; j++)
                    v += ad->scale * ad->B[o * ad->r + j] * ad->A[j * I + i];
            }
            if (L->lora->dense) v += L->lora->dense[o * I + i];
            out[o * I + i] = (float)v;
            mean += fabs(v);
        }
    float s = 1.0f / fmaxf((float)(mean / (O * I)), 1e-5f);
    for (int i = 0; i < O * I; i++) {
        float t = fminf(fmaxf(roundf(out[i] * s), -1.0f), 1.0f) / s;
        out[i] = (1.0f - L->lambda) * out[i] + L->lambda * t;
    }
}

static void bl_setup_blend(int M, int out, int in, float lambda, int bits, float act_lambda,
                           int subln) {
    BlError err;
    bl.M = M;
    bl_lora_init(&bl.st, out, in);
    CHECK(bl_lora_add_adapter(&bl.st, 2, 4.0f, 11, &err) == 0, "add adapter: %s", err.msg);
    CHECK(bl_lora_add_adapter(&bl.st, 3, 6.0f, 12, &err) == 0, "add adapter: %s", err.msg);
    for (int a = 0; a < 2; a++) /* B = 0 at init; give both a value so every term is live */
        for (int i = 0; i < out * bl.st.ad[a].r; i++) bl.st.ad[a].B[i] = 0.3f * frand();
    bl.L = (BlBitLinear){.w = rnd((size_t)out * in, 1), .b = rnd(out, 1), .out = out, .in = in,
                         .lora = &bl.st, .lambda = lambda, .act_bits = bits,
                         .act_keep = 1.0f - act_lambda,
                         .subln = subln ? rnd(in, 1) : NULL, .dsubln = subln ? zeros(in) : NULL,
                         .subln_eps = 1e-5f};
    bl.x = rnd((size_t)M * in, 1), bl.R = rnd((size_t)M * out, 1), bl.y = zeros((size_t)M * out);
    bl.xq = zeros((size_t)M * in), bl.rstd = zeros(M), bl.weff = zeros((size_t)out * in);
}

static void bl_setup(int M, int out, int in, float lambda, int bits, int subln) {
    bl_setup_blend(M, out, in, lambda, bits, 1.0f, subln);
}

static void bl_teardown(void) {
    bl_lora_free(&bl.st);
    free((float *)bl.L.w), free((float *)bl.L.b), free(bl.L.subln), free(bl.L.dsubln);
    free(bl.x), free(bl.R), free(bl.y), free(bl.xq), free(bl.rstd), free(bl.weff);
}

/* Runs forward + backward with dy = R; returns dx (caller frees). */
static float *bl_grads(void) {
    BlError err;
    int M = bl.M, in = bl.L.in;
    float *dx = rnd((size_t)M * in, 1), *ls = zeros(bl_lora_scratch_floats(&bl.st, M));
    bl_lora_zero_grad(&bl.st);
    CHECK(bl_bitlinear_forward(bl.y, bl.xq, bl.rstd, bl.x, &bl.L, M, bl.weff, &err) == 0, "fwd");
    bl_bitlinear_backward(dx, bl.R, bl.x, bl.xq, bl.rstd, &bl.L, M, bl.weff, ls);
    free(ls);
    return dx;
}

static void test_lora_stack(void) {
    BlError err;
    BlLoraStack a, b;
    bl_lora_init(&a, 5, 7);
    bl_lora_init(&b, 5, 7);
    CHECK(bl_lora_add_adapter(&a, 3, 3.0f, 42, &err) == 0, "add: %s", err.msg);
    CHECK(bl_lora_add_adapter(&b, 3, 3.0f, 42, &err) == 0, "add: %s", err.msg);
    CHECK(memcmp(a.ad[0].A, b.ad[0].A, sizeof(float) * 21) == 0, "same seed, same A");
    float bound = 1.0f / sqrtf(7.0f);
    double var = 0.0;
    for (int i = 0; i < 21; i++) {
        CHECK(fabsf(a.ad[0].A[i]) <= bound && a.ad[0].B[i % 15] == 0.0f, "init range / B = 0");
        var += a.ad[0].A[i] * a.ad[0].A[i];
    }
    CHECK(var > 0.0, "A not all zero");
    CHECK(bl_lora_add_adapter(&a, 0, 1.0f, 1, &err) == -1 && strstr(err.msg, "rank"), "rank 0");
    CHECK(bl_lora_add_adapter(&a, 2, 2.0f, 43, &err) == 0 && a.ad[0].dA == NULL && a.ad[1].dA,
          "older adapter frozen");
    /* merge against the explicit sum */
    for (int i = 0; i < 15; i++) a.ad[0].B[i] = frand();
    for (int i = 0; i < 10; i++) a.ad[1].B[i] = frand();
    CHECK(bl_lora_enable_dense(&a, &err) == 0, "dense");
    for (int i = 0; i < 35; i++) a.dense[i] = frand();
    float *w = rnd(35, 1), got[35], want[35];
    bl_lora_merge(got, w, &a);
    for (int o = 0; o < 5; o++)
        for (int i = 0; i < 7; i++) {
            double v = w[o * 7 + i] + a.dense[o * 7 + i];
            for (int j = 0; j < 3; j++) v += 1.0 * a.ad[0].B[o * 3 + j] * a.ad[0].A[j * 7 + i];
            for (int j = 0; j < 2; j++) v += 1.0 * a.ad[1].B[o * 2 + j] * a.ad[1].A[j * 7 + i];
            want[o * 7 + i] = (float)v;
        }
    expect_close("lora merge", got, want, 35, 1e-6);
    memcpy(got, w, sizeof got);
    bl_lora_merge(got, got, &a);
    expect_close("lora merge in place", got, want, 35, 1e-6);
    free(w);
    bl_lora_free(&a);
    bl_lora_free(&b);
}

static void test_bitlinear(void) {
    int M = 3, out = 5, in = 7;

    /* λ = 0.4 and SubLN but no actq: Weff does not depend on x or the SubLN
     * weight, so FD on x and on g is meaningful */
    bl_setup(M, out, in, 0.4f, 16, 1);
    float *dx = bl_grads();
    fd_check("bitlinear dx (λ=.4, SubLN)", bl.x, dx, (size_t)M * in, loss_bitlinear);
    fd_check("bitlinear dsubln", bl.L.subln, bl.L.dsubln, in, loss_bitlinear);
    free(dx);
    bl_teardown();

    /* λ = 0, no actq: y is bilinear in A, B, so FD on the newest factors is meaningful */
    bl_setup(M, out, in, 0.0f, 16, 0);
    dx = bl_grads();
    BlLoraAdapter *ad = &bl.st.ad[1];
    fd_check("lora dA (λ=0)", ad->A, ad->dA, (size_t)ad->r * in, loss_bitlinear);
    fd_check("lora dB (λ=0)", ad->B, ad->dB, (size_t)out * ad->r, loss_bitlinear);
    CHECK(bl.st.ad[0].dA == NULL && bl.st.ad[0].dB == NULL, "older adapter has no grads");
    free(dx);
    BlError err;
    CHECK(bl_lora_enable_dense(&bl.st, &err) == 0, "dense");
    for (int i = 0; i < out * in; i++) bl.st.dense[i] = 0.2f * frand();
    dx = bl_grads();
    fd_check("dense dΔW (λ=0)", bl.st.dense, bl.st.ddense, (size_t)out * in, loss_bitlinear);
    free(dx);
    bl_teardown();

    /* λ = 0.7, 8-bit actq, SubLN: STE. dL/dΔW := dyᵀ·xq; then
     * dA = s·Bᵀ·dL/dΔW, dB = s·dL/dΔW·Aᵀ, and dx = RMSNorm_backward(dy·Weff),
     * all written out densely here */
    bl_setup(M, out, in, 0.7f, 8, 1);
    dx = bl_grads();
    ad = &bl.st.ad[1];
    int r = ad->r;
    float *G = zeros((size_t)out * in), *wA = zeros((size_t)r * in), *wB = zeros((size_t)out * r);
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
            for (int m = 0; m < M; m++) G[o * in + i] += bl.R[m * out + o] * bl.xq[m * in + i];
    for (int j = 0; j < r; j++)
        for (int i = 0; i < in; i++)
            for (int o = 0; o < out; o++)
                wA[j * in + i] += ad->scale * ad->B[o * r + j] * G[o * in + i];
    for (int o = 0; o < out; o++)
        for (int j = 0; j < r; j++)
            for (int i = 0; i < in; i++)
                wB[o * r + j] += ad->scale * G[o * in + i] * ad->A[j * in + i];
    expect_close("lora dA (λ=.7, STE dense)", ad->dA, wA, (size_t)r * in, 1e-5);
    expect_close("lora dB (λ=.7, STE dense)", ad->dB, wB, (size_t)out * r, 1e-5);

    float *W = zeros((size_t)out * in), *dn = zeros((size_t)M * in), *wdx = zeros((size_t)M * in);
    dense_weff(W, &bl.L);
    expect_close("bitlinear Weff (definition)", bl.weff, W, (size_t)out * in, 1e-5);
    for (int m = 0; m < M; m++)
        for (int i = 0; i < in; i++)
            for (int o = 0; o < out; o++) dn[m * in + i] += bl.R[m * out + o] * W[o * in + i];
    for (int m = 0; m < M; m++) { /* RMSNorm backward written out: r·(g·dn − x̂·mean(g·dn·x̂)) */
        double ss = 0.0, c = 0.0;
        for (int i = 0; i < in; i++) ss += (double)bl.x[m * in + i] * bl.x[m * in + i];
        double rs = 1.0 / sqrt(ss / in + 1e-5);
        for (int i = 0; i < in; i++) c += bl.L.subln[i] * dn[m * in + i] * bl.x[m * in + i] * rs;
        for (int i = 0; i < in; i++)
            wdx[m * in + i] = (float)(rs * (bl.L.subln[i] * dn[m * in + i] -
                                            bl.x[m * in + i] * rs * c / in));
    }
    expect_close("bitlinear dx (λ=.7, STE)", dx, wdx, (size_t)M * in, 1e-4);
    free(dx), free(G), free(wA), free(wB), free(W), free(dn), free(wdx);
    bl_teardown();
}

/* λ blending the activations (lambda_acts: xq = x + λa·(actq(x) − x)). The
 * blend is checked against its definition written out with roundf; its
 * gradient is STE (d xq/dx := I), so dx is checked against dy·Weff written
 * out. FD is meaningful on the LoRA factors and the dense ΔW with the weights
 * at λ = 0 (y bilinear in them; xq does not depend on them): it proves the
 * trainable gradients take the blended input, not actq(x) or x. */
static void test_bitlinear_act_blend(void) {
    int M = 4, out = 5, in = 9;
    for (int bits = 4; bits <= 8; bits += 4) {
        float act_lambda = 0.2f + 0.6f * (0.5f + 0.5f * frand()); /* in (0.2, 0.8) */
        bl_setup_blend(M, out, in, 0.0f, bits, act_lambda, 0);
        BlError err;
        CHECK(bl_lora_enable_dense(&bl.st, &err) == 0, "dense");
        for (int i = 0; i < out * in; i++) bl.st.dense[i] = 0.2f * frand();
        float *dx = bl_grads();
        float Q = bits == 8 ? 127.0f : 7.0f, *want = zeros((size_t)M * in);
        int moved = 0; /* elements where the blend differs from both x and actq(x) */
        for (int m = 0; m < M; m++) {
            const float *x = bl.x + (size_t)m * in;
            float mx = 0.0f;
            for (int i = 0; i < in; i++) mx = fmaxf(mx, fabsf(x[i]));
            float s = Q / fmaxf(mx, 1e-5f);
            for (int i = 0; i < in; i++) {
                float q = fminf(fmaxf(roundf(x[i] * s), -Q - 1.0f), Q) / s;
                want[m * in + i] = (1.0f - act_lambda) * x[i] + act_lambda * q;
                moved += q != x[i] && want[m * in + i] != q && want[m * in + i] != x[i];
            }
        }
        char name[64];
        snprintf(name, sizeof name, "act blend xq (%d-bit, λa=%.2f)", bits, (double)act_lambda);
        expect_close(name, bl.xq, want, (size_t)M * in, 4 * FLT_EPSILON);
        CHECK(moved > M * in / 2, "%s: the blend moved only %d of %d inputs", name, moved, M * in);
        BlLoraAdapter *ad = &bl.st.ad[1];
        snprintf(name, sizeof name, "lora dA (%d-bit act blend)", bits);
        fd_check(name, ad->A, ad->dA, (size_t)ad->r * in, loss_bitlinear);
        snprintf(name, sizeof name, "lora dB (%d-bit act blend)", bits);
        fd_check(name, ad->B, ad->dB, (size_t)out * ad->r, loss_bitlinear);
        snprintf(name, sizeof name, "dense dΔW (%d-bit act blend)", bits);
        fd_check(name, bl.st.dense, bl.st.ddense, (size_t)out * in, loss_bitlinear);
        /* STE: dx = dy·Weff, Weff = W + ΔW at λ = 0 */
        float *W = zeros((size_t)out * in), *wdx = zeros((size_t)M * in);
        dense_weff(W, &bl.L);
        for (int m = 0; m < M; m++)
            for (int i = 0; i < in; i++)
                for (int o = 0; o < out; o++) wdx[m * in + i] += bl.R[m * out + o] * W[o * in + i];
        snprintf(name, sizeof name, "bitlinear dx (%d-bit blend, STE)", bits);
        expect_close(name, dx, wdx, (size_t)M * in, 1e-5);
        free(dx), free(want), free(W), free(wdx);
        bl_teardown();
    }
}

// ----------------------------------------------------------------------------
// losses

static struct {
    float *s, *t, *h[3], *ht[3];
    int *tids;
    float *tlp;
    BlLossRows rows;
    const uint8_t *mask;
    int K, M, D;
    float tau;
} ls;

static double loss_ce(void) { return bl_ce_loss(NULL, 1.0f, ls.s, &ls.rows); }
static double loss_kl(void) { return bl_kl_loss(NULL, 1.0f, ls.s, ls.t, &ls.rows, ls.tau); }
static double loss_topk(void) {
    return bl_topk_kl_loss(NULL, 1.0f, ls.s, ls.tids, ls.tlp, ls.K, &ls.rows, ls.tau);
}
static double loss_hidden(void) { /* cos + 0.3·mag */
    float w[3] = {1.0f, 0.5f, 2.0f};
    double mag;
    double c = bl_hidden_loss(NULL, 1.0f, 0.3f, (const float *const *)ls.h,
                              (const float *const *)ls.ht, w, 3, ls.mask, ls.M, ls.D, &mag);
    return c + 0.3 * mag;
}

/* rows whose gradient must stay zero: not selected by the mask / target rule */
static void expect_zero_rows(const char *name, const float *d, const int *sel, int n, int V) {
    for (int r = 0; r < n; r++)
        if (!sel[r])
            for (int j = 0; j < V; j++)
                CHECK(d[r * V + j] == 0.0f, "%s: unselected row %d", name, r);
}

static void test_losses(void) {
    /* B = 2, T = 4, V = 11: row 1 masked, row 4's target (token 5) is −1, rows 3
     * and 7 have no next token; selected rows 0, 2, 5, 6 */
    enum { B = 2, T = 4, V = 11, N = B * T, K = 4 };
    int tokens[N] = {3, 9, 0, 10, 2, -1, 7, 1};
    uint8_t mask[N] = {1, 0, 1, 1, 1, 1, 1, 1};
    int sel[N] = {1, 0, 1, 0, 0, 1, 1, 0};
    ls.rows = (BlLossRows){.tokens = tokens, .mask = mask, .B = B, .T = T, .V = V};
    ls.s = rnd(N * V, 3), ls.t = rnd(N * V, 3), ls.tau = 1.7f, ls.K = K;
    float *d = zeros(N * V);

    double l = bl_ce_loss(d, 1.0f, ls.s, &ls.rows);
    CHECK(isfinite(l) && l > 0, "ce %g", l);
    fd_check("ce dlogits", ls.s, d, N * V, loss_ce);
    expect_zero_rows("ce", d, sel, N, V);

    memset(d, 0, sizeof(float) * N * V);
    l = bl_kl_loss(d, 1.0f, ls.s, ls.t, &ls.rows, ls.tau);
    CHECK(isfinite(l) && l > 0, "kl %g", l);
    fd_check("kl dlogits (τ=1.7)", ls.s, d, N * V, loss_kl);
    expect_zero_rows("kl", d, sel, N, V);
    CHECK(fabs(bl_kl_loss(NULL, 1.0f, ls.t, ls.t, &ls.rows, ls.tau)) < 1e-9, "KL(p‖p) = 0");

    ls.tids = malloc(sizeof(int) * N * K), ls.tlp = malloc(sizeof(float) * N * K);
    bl_topk_logprobs(ls.tids, ls.tlp, ls.t, N, V, K, ls.tau);
    for (int r = 0; r < N; r++)
        for (int k = 1; k < K; k++)
            CHECK(ls.t[r * V + ls.tids[r * K + k]] <= ls.t[r * V + ls.tids[r * K + k - 1]],
                  "top-K sorted");
    memset(d, 0, sizeof(float) * N * V);
    l = bl_topk_kl_loss(d, 1.0f, ls.s, ls.tids, ls.tlp, K, &ls.rows, ls.tau);
    CHECK(isfinite(l) && l > 0, "topk %g", l);
    fd_check("top-K KL dlogits", ls.s, d, N * V, loss_topk);
    expect_zero_rows("top-K KL", d, sel, N, V);

    /* K = V: the "other" bucket is empty and the top-K KL is the full KL */
    int *ids2 = malloc(sizeof(int) * N * V);
    float *lp2 = malloc(sizeof(float) * N * V);
    bl_topk_logprobs(ids2, lp2, ls.t, N, V, V, ls.tau);
    double full = bl_kl_loss(NULL, 1.0f, ls.s, ls.t, &ls.rows, ls.tau);
    double tk = bl_topk_kl_loss(NULL, 1.0f, ls.s, ids2, lp2, V, &ls.rows, ls.tau);
    CHECK(fabs(full - tk) < 1e-5 * (1 + full), "K = V: top-K %g vs full %g", tk, full);

    /* a teacher with all its mass in its top-K (Σp_k rounds to 1) and a
     * student sure of one token: finite loss and gradient */
    float *peak = zeros(N * V), *st = zeros(N * V);
    for (int r = 0; r < N; r++) peak[r * V + 2] = 200.0f, st[r * V + 5] = 300.0f;
    bl_topk_logprobs(ls.tids, ls.tlp, peak, N, V, K, 1.0f);
    memset(d, 0, sizeof(float) * N * V);
    l = bl_topk_kl_loss(d, 1.0f, st, ls.tids, ls.tlp, K, &ls.rows, 1.0f);
    int finite = isfinite(l);
    for (int i = 0; i < N * V; i++) finite &= isfinite(d[i]);
    CHECK(finite, "peaked top-K: loss %g not finite or NaN gradient", l);
    int bad[N * K];
    memcpy(bad, ls.tids, sizeof bad);
    bad[2 * K + 1] = bad[2 * K]; /* a duplicate id in selected row 2 */
    CHECK(isnan(bl_topk_kl_loss(NULL, 1.0f, ls.s, bad, ls.tlp, K, &ls.rows, 1.0f)),
          "duplicate ids must give NAN");

    /* no selected row: 0, no gradient, no NaN */
    uint8_t none[N] = {0};
    BlLossRows empty = ls.rows;
    empty.mask = none;
    memset(d, 0, sizeof(float) * N * V);
    CHECK(bl_ce_loss(d, 1.0f, ls.s, &empty) == 0.0 &&
          bl_kl_loss(d, 1.0f, ls.s, ls.t, &empty, 1.0f) == 0.0 &&
          bl_topk_kl_loss(d, 1.0f, ls.s, ls.tids, ls.tlp, K, &empty, 1.0f) == 0.0,
          "empty selection must give 0");
    for (int i = 0; i < N * V; i++) CHECK(d[i] == 0.0f, "empty selection wrote a gradient");

    /* grad_weight scales and accumulates */
    float *d1 = zeros(N * V), *d2 = zeros(N * V);
    bl_ce_loss(d1, 1.0f, ls.s, &ls.rows);
    bl_ce_loss(d2, 0.5f, ls.s, &ls.rows);
    bl_ce_loss(d2, 0.5f, ls.s, &ls.rows);
    expect_close("ce grad_weight 2×0.5", d2, d1, N * V, 1e-6);

    /* hidden cosine + magnitude over 3 layers of [M=5, D=7], row 2 masked */
    int M = 5, D = 7;
    uint8_t hm[5] = {1, 1, 0, 1, 1};
    ls.M = M, ls.D = D, ls.mask = hm;
    float *dh[3];
    for (int i = 0; i < 3; i++)
        ls.h[i] = rnd(M * D, 1), ls.ht[i] = rnd(M * D, 2), dh[i] = zeros(M * D);
    float w[3] = {1.0f, 0.5f, 2.0f};
    double mag;
    l = bl_hidden_loss(dh, 1.0f, 0.3f, (const float *const *)ls.h, (const float *const *)ls.ht, w,
                       3, hm, M, D, &mag);
    CHECK(isfinite(l) && l > 0 && isfinite(mag) && mag > 0, "cos %g mag %g", l, mag);
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "cos+0.3·mag dh[%d]", i);
        fd_check(name, ls.h[i], dh[i], M * D, loss_hidden);
        for (int j = 0; j < D; j++) CHECK(dh[i][2 * D + j] == 0.0f, "masked hidden row");
    }
    l = bl_hidden_loss(NULL, 1.0f, 1.0f, (const float *const *)ls.ht, (const float *const *)ls.ht,
                       NULL, 3, NULL, M, D, &mag);
    CHECK(fabs(l) < 1e-6 && fabs(mag) < 1e-12, "identical states give 0: %g %g", l, mag);
    uint8_t nohid[5] = {0};
    l = bl_hidden_loss(dh, 1.0f, 1.0f, (const float *const *)ls.h, (const float *const *)ls.ht,
                       NULL, 3, nohid, M, D, &mag);
    CHECK(l == 0.0 && mag == 0.0, "empty hidden selection gives 0");

    for (int i = 0; i < 3; i++) free(ls.h[i]), free(ls.ht[i]), free(dh[i]);
    free(ls.s), free(ls.t), free(d), free(ls.tids), free(ls.tlp), free(ids2), free(lp2);
    free(peak), free(st), free(d1), free(d2);
}

// ----------------------------------------------------------------------------
// AdamW: two steps on p = {1, −2}, g1 = {0.5, 0.1}, g2 = {−0.25, 0.3},
// lr 0.1, β1 0.9, β2 0.999, ε 1e-8, wd 0.01 (p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + ε)):
// element 0  t=1: m = 0.05, v = 2.5e-4, m̂ = 0.5, v̂ = 0.25
//                 p = 0.999 − 0.1·0.5/(0.5 + 1e-8) = 0.999 − 0.09999999800 = 0.89900000200
//            t=2: m = 0.045 − 0.025 = 0.02, v = 2.4975e-4 + 6.25e-5 = 3.1225e-4,
//                 m̂ = 0.02/0.19 = 0.10526315789, v̂ = 3.1225e-4/0.001999 = 0.15620310155,
//                 √v̂ = 0.39522538070, p = 0.89810100200 − 0.02663370329 = 0.87146729871
// element 1  t=1: m̂ = 0.1, v̂ = 0.01, p = −1.998 − 0.1·0.1/(0.1 + 1e-8) = −2.09799999000
//            t=2: m = 0.009 + 0.03 = 0.039, v = 9.99e-6 + 9e-5 = 9.999e-5,
//                 m̂ = 0.20526315789, v̂ = 0.05002001001, √v̂ = 0.22365153701,
//                 p = −2.09590199001 − 0.09177810779 = −2.18768009780

static void test_adamw(void) {
    BlError err;
    BlAdamWState s;
    BlAdamWConfig c = {
        .lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f};
    float p[2] = {1.0f, -2.0f}, g1[2] = {0.5f, 0.1f}, g2[2] = {-0.25f, 0.3f};
    CHECK(bl_adamw_init(&s, 2, &err) == 0, "init");
    bl_adamw_step(p, g1, &s, &c);
    CHECK(fabs(p[0] - 0.89900000200) < 2e-6 && fabs(p[1] + 2.09799999000) < 2e-6,
          "adamw step 1: %.9f %.9f", p[0], p[1]);
    bl_adamw_step(p, g2, &s, &c);
    CHECK(fabs(p[0] - 0.87146729871) < 2e-6 && fabs(p[1] + 2.18768009780) < 2e-6,
          "adamw step 2: %.9f %.9f", p[0], p[1]);
    printf("  %-28s p = %.7f %.7f\n", "adamw two steps", p[0], p[1]);
    bl_adamw_reset(&s);
    CHECK(s.t == 0 && s.m[0] == 0 && s.v[1] == 0, "reset");
    /* after a reset the first step again moves by ≈ lr (bias correction) */
    float q[2] = {0.0f, 0.0f};
    bl_adamw_step(q, g2, &s, &c);
    CHECK(fabs(q[0] - 0.1) < 1e-6 && fabs(q[1] + 0.1) < 1e-6, "first step after reset %g %g", q[0],
          q[1]);
    bl_adamw_free(&s);

    /* global norm over two tensors: √(9 + 16 + 144) = 13; clip to 6.5 scales
     * by 6.5/(13 + 1e-6) (torch's clip_grad_norm_ rule) */
    float ga[2] = {3.0f, 4.0f}, gb[1] = {12.0f};
    BlParamRef refs[2] = {{.p = NULL, .g = ga, .n = 2}, {.p = NULL, .g = gb, .n = 1}};
    CHECK(bl_grad_norm(refs, 2) == 13.0, "norm %g", bl_grad_norm(refs, 2));
    CHECK(bl_grad_clip(refs, 2, 20.0f) == 13.0 && ga[0] == 3.0f, "no clip below max");
    CHECK(bl_grad_clip(refs, 2, 6.5f) == 13.0 && fabsf(ga[0] - 1.5f) < 1e-6f &&
              fabsf(ga[1] - 2.0f) < 1e-6f && fabsf(gb[0] - 6.0f) < 1e-6f,
          "clip: %g %g %g", ga[0], ga[1], gb[0]);
    CHECK(bl_grad_norm(refs, 2) < 6.5, "clipped norm");
    CHECK(!bl_grad_nonfinite(refs, 2), "finite grads flagged");
    gb[0] = NAN;
    CHECK(bl_grad_nonfinite(refs, 2), "NaN not flagged");
    gb[0] = -INFINITY;
    CHECK(bl_grad_nonfinite(refs, 2), "-Inf not flagged");
}

int main(void) {
    test_matmul();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_attention_packed();
    test_swiglu();
    test_lora_stack();
    test_bitlinear();
    test_bitlinear_act_blend();
    test_losses();
    test_adamw();
    if (failures) {
        fprintf(stderr, "test_grad_check: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_grad_check: ok\n");
    return 0;
}
