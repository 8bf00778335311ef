/* test_ternary_gemm.c - the exact integer student linear (ops/ternary_gemm.h)
 * on fresh random inputs of odd shapes (K not a multiple of 4 or 16, M = 1,
 * a SmolLM2 MLP block), for every kernel this CPU can execute (the others
 * are skipped with a note):
 *   - the int8 activations are bl_actq's: q/s is its output bit for bit,
 *     scales equal, also on rounding ties, their float neighbours and rows
 *     with a huge outlier; 8 and 4 bits;
 *   - the packed weights are bl_wq_int8's ternary (+1) in the packed layout;
 *   - the int32 sums equal a plain int64 loop and an fp32 sgemm of the same
 *     integers (exact: |sum| < 2^24);
 *   - the scaled y equals (float)acc / (sx·sw) + bias from that exact fp32
 *     product, bit for bit (the CUDA epilogue's arithmetic);
 *   - bl_ternary_linear under $BITLAB_INT8_KERNEL and the CPU backend's
 *     ternary_matmul (LoRA stack + dense merged first) give the same bits,
 *     and a bad $BITLAB_INT8_KERNEL is refused. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "ops/quant.h"
#include "ops/ternary_gemm.h"
#include "ops/weff.h"

#include "check.h"
#include "rand.h"

// ----------------------------------------------------------------------------
// random inputs


static float *fnew(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "test_ternary_gemm: out of memory\n");
        exit(1);
    }
    return p;
}

/* x[M, K]: uniform in [-2, 2] (never all zero); row 1 has a huge outlier
 * (every other level collapses towards 0); row 2 is made of rounding ties
 * of its own scale and their float neighbours */
static void fill_x(float *x, int M, int K, int Q) {
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = frand(-2.0f, 2.0f);
    if (M > 1) x[(size_t)1 * K + K / 2] = 3.0e4f;
    if (M > 2) {
        float *r = x + (size_t)2 * K, amax = 1.7f, s = (float)Q / amax;
        r[0] = amax;
        for (int i = 1; i < K; i++) {
            float k = (float)((int)(urand() * (2 * Q)) - Q) + 0.5f; /* a half level */
            float v = k / s;
            int which = i % 3;
            r[i] = which == 0 ? v : which == 1 ? nextafterf(v, 10.0f) : nextafterf(v, -10.0f);
            if (fabsf(r[i]) > amax) r[i] = amax;
        }
    }
}

// ----------------------------------------------------------------------------
// the checks of one shape

static int t_of(const BlTernaryPacked *p, int n, int k) { /* t + 1, unpacked */
    int G = p->Kp / 4;
    return p->w[(((size_t)(n / BL_TG_NB) * G + k / 4) * BL_TG_NB + n % BL_TG_NB) * 4 + k % 4];
}

static void check_acts(const BlActsI8 *a, const float *x, int bits, const char *what) {
    int M = a->M, K = a->K;
    float *xq = fnew((size_t)M * K), *sc = fnew((size_t)M);
    CHECK(bl_actq(xq, sc, x, M, K, bits, NULL) == 0, "%s: bl_actq failed", what);
    int bad = 0;
    for (int m = 0; m < M; m++) {
        CHECK(memcmp(&sc[m], &a->scale[m], sizeof(float)) == 0, "%s: row %d scale %.9g vs %.9g",
              what, m, a->scale[m], sc[m]);
        int32_t sum = 0;
        for (int k = 0; k < a->Kp; k++) {
            int8_t q = a->q[(size_t)m * a->Kp + k];
            if (k >= K) {
                bad += q != 0;
                continue;
            }
            sum += q;
            float v = (float)q / a->scale[m];
            if (memcmp(&v, &xq[(size_t)m * K + k], sizeof v) != 0 && bad++ < 5)
                fprintf(stderr, "%s: x[%d,%d] = %.9g: q/s = %.9g, bl_actq %.9g\n", what, m, k,
                        x[(size_t)m * K + k], v, xq[(size_t)m * K + k]);
        }
        CHECK(sum == a->rowsum[m], "%s: row %d sum %d vs %d", what, m, a->rowsum[m], sum);
    }
    for (int m = M; m < a->Mp; m++) {
        CHECK(a->rowsum[m] == 0, "%s: padding row %d sum %d", what, m, a->rowsum[m]);
        for (int k = 0; k < a->Kp; k++) bad += a->q[(size_t)m * a->Kp + k] != 0;
    }
    CHECK(bad == 0, "%s: %d activation levels differ from bl_actq (or padding not zero)", what,
          bad);
    free(xq);
    free(sc);
}

static void check_pack(const BlTernaryPacked *p, const float *w, const int8_t *t, float sw,
                       const char *what) {
    CHECK(memcmp(&p->scale, &sw, sizeof sw) == 0, "%s: weight scale %.9g vs %.9g", what,
          p->scale, sw);
    int bad = 0;
    for (int n = 0; n < p->Np; n++)
        for (int k = 0; k < p->Kp; k++) {
            int want = n < p->N && k < p->K ? t[(size_t)n * p->K + k] + 1 : 0;
            if (t_of(p, n, k) != want && bad++ < 5)
                fprintf(stderr, "%s: w[%d,%d] = %.9g packed %d, want %d\n", what, n, k,
                        n < p->N && k < p->K ? w[(size_t)n * p->K + k] : 0.0f, t_of(p, n, k),
                        want);
        }
    CHECK(bad == 0, "%s: %d packed weights differ from bl_wq_int8", what, bad);
}

/* the reference scaled output from the exact fp32 sums */
static void ref_y(float *y, const float *accf, const float *sx, float sw, const float *bias, int M,
                  int N) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float v = accf[(size_t)m * N + n] / (sx[m] * sw);
            y[(size_t)m * N + n] = bias ? v + bias[n] : v;
        }
}

static int count_diff(const float *a, const float *b, size_t n, const char *what) {
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && bad++ < 5)
            fprintf(stderr, "%s: [%zu] %.9g vs %.9g\n", what, i, a[i], b[i]);
    return bad;
}

static void run_shape(int M, int N, int K, int bits) {
    char what[96];
    snprintf(what, sizeof what, "%dx%dx%d A%d", M, N, K, bits);
    int Q = bl_actq_levels(bits);
    size_t MK = (size_t)M * K, NK = (size_t)N * K, MN = (size_t)M * N;
    float *x = fnew(MK), *w = fnew(NK), *bias = fnew((size_t)N);
    fill_x(x, M, K, Q);
    for (size_t i = 0; i < NK; i++) w[i] = frand(-1.0f, 1.0f);
    for (int n = 0; n < N; n++) bias[n] = frand(-1.0f, 1.0f);
    BlError err = {{0}};

    BlActsI8 a;
    BlTernaryPacked p;
    if (bl_acts_i8_alloc(&a, M, K, &err) || bl_ternary_packed_alloc(&p, N, K, &err)) {
        CHECK(0, "%s: %s", what, err.msg);
        return;
    }
    memset(a.q, 0x5a, (size_t)a.Mp * a.Kp); /* padding must be written, not assumed */
    CHECK(bl_actq_i8(&a, x, bits, &err) == 0, "%s: bl_actq_i8: %s", what, err.msg);
    check_acts(&a, x, bits, what);

    int8_t *t = malloc(NK ? NK : 1);
    float sw = bl_wq_int8(t, w, NK);
    memset(p.w, 0x5a, (size_t)p.Np * p.Kp);
    bl_ternary_pack(&p, w, bl_wq_scale(w, NK));
    check_pack(&p, w, t, sw, what);

    /* the exact references: int64 loops (every row for small shapes, a sample
     * for large ones) and an fp32 sgemm of the integer values */
    float *qf = fnew(MK), *tf = fnew(NK), *accf = fnew(MN), *want = fnew(MN), *got = fnew(MN);
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) qf[(size_t)m * K + k] = a.q[(size_t)m * a.Kp + k];
    for (size_t i = 0; i < NK; i++) tf[i] = t[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, qf, K, tf, K, 0.0f, accf,
                N);
    int row_step = MN * (size_t)K > ((size_t)1 << 26) ? 37 : 1;
    ref_y(want, accf, a.scale, sw, bias, M, N);
    int32_t *acc = malloc(sizeof(int32_t) * (MN ? MN : 1));

    for (int k = 0; k < BL_INT8_KERNELS; k++) {
        const char *kn = bl_int8_kernel_name((BlInt8Kernel)k);
        char kw[128];
        snprintf(kw, sizeof kw, "%s %s", what, kn);
        if (!bl_int8_kernel_supported((BlInt8Kernel)k)) {
            CHECK(bl_int8_gemm((BlInt8Kernel)k, acc, &a, &p, &err) == -1 &&
                      strstr(err.msg, "cannot execute"),
                  "%s: an unsupported kernel must be refused", kw);
            continue;
        }
        for (size_t i = 0; i < MN; i++) acc[i] = 0x7f7f7f7f;
        CHECK(bl_int8_gemm((BlInt8Kernel)k, acc, &a, &p, &err) == 0, "%s: %s", kw, err.msg);
        int bad = 0;
        for (size_t i = 0; i < MN; i++)
            if ((float)acc[i] != accf[i] && bad++ < 5)
                fprintf(stderr, "%s: acc[%zu] = %d, fp32 exact %.1f\n", kw, i, acc[i], accf[i]);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N && (m % row_step == 0 || m == M - 1); n++) {
                int64_t s = 0;
                for (int kk = 0; kk < K; kk++)
                    s += (int64_t)a.q[(size_t)m * a.Kp + kk] * t[(size_t)n * K + kk];
                if (s != acc[(size_t)m * N + n] && bad++ < 5)
                    fprintf(stderr, "%s: acc[%d,%d] = %d, int64 %lld\n", kw, m, n,
                            acc[(size_t)m * N + n], (long long)s);
            }
        CHECK(bad == 0, "%s: %d int32 sums wrong", kw, bad);

        for (int with_bias = 0; with_bias < 2; with_bias++) {
            float *wb = with_bias ? want : fnew(MN);
            if (!with_bias) ref_y(wb, accf, a.scale, sw, NULL, M, N);
            for (size_t i = 0; i < MN; i++) got[i] = NAN;
            CHECK(bl_int8_gemm_scaled((BlInt8Kernel)k, got, with_bias ? bias : NULL, &a, &p,
                                      &err) == 0,
                  "%s: %s", kw, err.msg);
            CHECK(count_diff(got, wb, MN, kw) == 0, "%s: scaled y (%s) differs from the exact "
                  "fp32 product's", kw, with_bias ? "bias" : "no bias");
            if (!with_bias) free(wb);
        }

        /* the whole product under the override: the same bits */
        setenv("BITLAB_INT8_KERNEL", kn, 1);
        BlMergeSpec ms = {.w = w, .out = N, .in = K};
        for (size_t i = 0; i < MN; i++) got[i] = NAN;
        CHECK(bl_ternary_linear(got, x, &ms, bias, M, bits, &err) == 0, "%s: %s", kw, err.msg);
        CHECK(count_diff(got, want, MN, kw) == 0, "%s: bl_ternary_linear differs", kw);
        unsetenv("BITLAB_INT8_KERNEL");
    }
    bl_acts_i8_free(&a);
    bl_ternary_packed_free(&p);
    free(acc);
    free(qf);
    free(tf);
    free(accf);
    free(want);
    free(got);
    free(t);
    free(x);
    free(w);
    free(bias);
}

// ----------------------------------------------------------------------------
// the backend entry: LoRA stack + dense merged first, then the integer path

static void test_backend_merge(void) {
    enum { M = 9, N = 70, K = 45, R = 5 };
    float *x = fnew(M * K), *w = fnew(N * K), *dense = fnew(N * K), *B = fnew(N * R),
          *A = fnew(R * K), *bias = fnew(N), *merged = fnew(N * K), *y = fnew(M * N),
          *want = fnew(M * N);
    fill_x(x, M, K, 127);
    for (int i = 0; i < N * K; i++) w[i] = frand(-1, 1), dense[i] = frand(-0.1f, 0.1f);
    for (int i = 0; i < N * R; i++) B[i] = frand(-0.05f, 0.05f);
    for (int i = 0; i < R * K; i++) A[i] = frand(-0.5f, 0.5f);
    for (int i = 0; i < N; i++) bias[i] = frand(-1, 1);
    BlError err = {{0}};
    BlMergeSpec ms = {.w = w, .dense = dense, .lora_b = B, .lora_a = A, .rank = R, .out = N,
                      .in = K};
    float s = bl_weff_merge(merged, &ms);
    BlActsI8 a;
    BlTernaryPacked p;
    if (bl_acts_i8_alloc(&a, M, K, &err) || bl_ternary_packed_alloc(&p, N, K, &err)) {
        CHECK(0, "backend merge: %s", err.msg);
        return;
    }
    bl_actq_i8(&a, x, 8, &err);
    bl_ternary_pack(&p, merged, s);
    bl_int8_gemm_scaled(BL_INT8_C, want, bias, &a, &p, &err);

    const BlBackend *be = bl_backend_cpu();
    BlWeffSpec ws = {.w = w, .dense = dense, .lora_b = B, .lora_a = A, .rank = R, .out = N,
                     .in = K, .lambda = 1.0f};
    for (int i = 0; i < M * N; i++) y[i] = NAN;
    CHECK(be->ternary_matmul(y, x, &ws, bias, M, 8, &err) == 0, "ternary_matmul: %s", err.msg);
    CHECK(count_diff(y, want, M * N, "backend") == 0,
          "cpu ternary_matmul differs from merge + pack + gemm");
    ws.lambda = 0.5f;
    CHECK(be->ternary_matmul(y, x, &ws, bias, M, 8, &err) == -1 && strstr(err.msg, "lambda"),
          "lambda 0.5 must be refused: '%s'", err.msg);
    ws.lambda = 1.0f;
    CHECK(be->ternary_matmul(y, x, &ws, bias, M, 16, &err) == -1 && strstr(err.msg, "16"),
          "16 bits must be refused: '%s'", err.msg);

    setenv("BITLAB_INT8_KERNEL", "sse9", 1);
    CHECK(be->ternary_matmul(y, x, &ws, bias, M, 8, &err) == -1 && strstr(err.msg, "sse9"),
          "an unknown kernel name must be refused: '%s'", err.msg);
    for (int k = 0; k < BL_INT8_KERNELS; k++)
        if (!bl_int8_kernel_supported((BlInt8Kernel)k)) {
            setenv("BITLAB_INT8_KERNEL", bl_int8_kernel_name((BlInt8Kernel)k), 1);
            CHECK(be->ternary_matmul(y, x, &ws, bias, M, 8, &err) == -1 &&
                      strstr(err.msg, "cannot execute"),
                  "an unsupported kernel must be refused: '%s'", err.msg);
        }
    unsetenv("BITLAB_INT8_KERNEL");
    bl_acts_i8_free(&a);
    bl_ternary_packed_free(&p);
    free(x), free(w), free(dense), free(B), free(A), free(bias), free(merged), free(y),
        free(want);
}

int main(void) {
    rand_seed_fresh("test_ternary_gemm");
    for (int k = 0; k < BL_INT8_KERNELS; k++)
        if (!bl_int8_kernel_supported((BlInt8Kernel)k))
            printf("test_ternary_gemm: note: this CPU cannot execute the %s kernel; skipped\n",
                   bl_int8_kernel_name((BlInt8Kernel)k));
    static const int shapes[][3] = {{3, 7, 33},   {1, 64, 576},  {17, 64, 576}, {5, 33, 17},
                                    {7, 130, 130}, {13, 200, 1}, {64, 96, 64},  {512, 1536, 576}};
    /* both widths on every shape but the largest (8 bits: it is the slow one
     * under the sanitizers) */
    size_t n_shapes = sizeof shapes / sizeof shapes[0];
    for (size_t i = 0; i < n_shapes; i++)
        for (int bits = 8; bits >= (i + 1 < n_shapes ? 4 : 8); bits -= 4)
            run_shape(shapes[i][0], shapes[i][1], shapes[i][2], bits);
    test_backend_merge();
    if (failures) {
        fprintf(stderr, "test_ternary_gemm: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_ternary_gemm: ok\n");
    return 0;
}
