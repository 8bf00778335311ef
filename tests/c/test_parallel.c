/* test_parallel.c - the worker pool and what runs on it: every index of a
 * range is run exactly once, by several threads when the pool has them;
 * nested and concurrent callers run inline instead of deadlocking; bl_gemm
 * (blocks fixed by the shape) against a double-precision product for every
 * transpose and both cut directions; the blocked absmean of bl_wq_scale
 * against the same sums taken serially, bit for bit, and the fused Weff
 * merge (ops/weff.h) against a plain W + B·A + dense with the same scale bits;
 * the RoPE table against the angles computed per row. Fresh random inputs. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/parallel.h"
#include "ops/quant.h"
#include "ops/rope.h"
#include "ops/weff.h"

#include "check.h"
#include "rand.h"

static float *rnd(size_t n) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) x[i] = frand(-1.0f, 1.0f);
    return x;
}

// ----------------------------------------------------------------------------
// the pool

typedef struct {
    _Atomic int *hits;
    pthread_t seen[8];
    _Atomic int n_seen;
    pthread_mutex_t mu;
    long nested_n;
} CoverCtx;

static void note_thread(CoverCtx *c) {
    pthread_t me = pthread_self();
    pthread_mutex_lock(&c->mu);
    int k = 0;
    while (k < c->n_seen && !pthread_equal(c->seen[k], me)) k++;
    if (k == c->n_seen && k < 8) c->seen[c->n_seen++] = me;
    pthread_mutex_unlock(&c->mu);
}

static void cover(void *ctx, long i0, long i1) {
    CoverCtx *c = ctx;
    note_thread(c);
    for (long i = i0; i < i1; i++) c->hits[i]++;
}

static void inner(void *ctx, long i0, long i1) {
    CoverCtx *c = ctx;
    for (long i = i0; i < i1; i++) c->hits[i]++;
    if (!pthread_equal(c->seen[0], pthread_self())) c->nested_n = -1; /* ran elsewhere */
}

static void outer(void *ctx, long i0, long i1) {
    CoverCtx *c = ctx;
    for (long i = i0; i < i1; i++) {
        CoverCtx in = {.hits = c->hits + i * c->nested_n, .mu = PTHREAD_MUTEX_INITIALIZER,
                       .nested_n = c->nested_n};
        in.seen[0] = pthread_self();
        bl_parallel_for(c->nested_n, 1L << 30, inner, &in);
        if (in.nested_n < 0) c->nested_n = -1;
    }
}

static void test_cover(void) {
    int nt = bl_parallel_threads();
    CHECK(nt == 3, "OPENBLAS_NUM_THREADS=3 gives %d threads", nt);
    long sizes[] = {1, 2, 3, 7, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        long n = sizes[s];
        _Atomic int *hits = calloc((size_t)n, sizeof *hits);
        CoverCtx c = {.hits = hits, .mu = PTHREAD_MUTEX_INITIALIZER};
        bl_parallel_for(n, 1L << 30, cover, &c);
        int bad = 0;
        for (long i = 0; i < n; i++) bad += hits[i] != 1;
        CHECK(bad == 0, "n=%ld: %d indices not run exactly once", n, bad);
        int want = n < nt ? (int)n : nt;
        CHECK(c.n_seen == want, "n=%ld: ran on %d threads, want %d", n, c.n_seen, want);
        /* below the work threshold: the caller alone */
        memset(hits, 0, sizeof *hits * n);
        CoverCtx small = {.hits = hits, .mu = PTHREAD_MUTEX_INITIALIZER};
        bl_parallel_for(n, BL_PARALLEL_MIN_WORK - 1, cover, &small);
        CHECK(small.n_seen == 1 && pthread_equal(small.seen[0], pthread_self()),
              "n=%ld small work ran on %d threads", n, small.n_seen);
        free(hits);
    }
    /* nested: each outer index runs its inner range on its own thread */
    long n_out = 5, n_in = 11;
    _Atomic int *hits = calloc((size_t)(n_out * n_in), sizeof *hits);
    CoverCtx c = {.hits = hits, .mu = PTHREAD_MUTEX_INITIALIZER, .nested_n = n_in};
    bl_parallel_for(n_out, 1L << 30, outer, &c);
    int bad = 0;
    for (long i = 0; i < n_out * n_in; i++) bad += hits[i] != 1;
    CHECK(bad == 0 && c.nested_n == n_in, "nested ranges: %d wrong, inline %s", bad,
          c.nested_n == n_in ? "yes" : "no");
    free(hits);
}

typedef struct {
    long n;
    int bad;
} UserThread;

static void *user_thread(void *arg) {
    UserThread *u = arg;
    for (int rep = 0; rep < 200; rep++) {
        _Atomic int *hits = calloc((size_t)u->n, sizeof *hits);
        CoverCtx c = {.hits = hits, .mu = PTHREAD_MUTEX_INITIALIZER};
        bl_parallel_for(u->n, 1L << 30, cover, &c);
        for (long i = 0; i < u->n; i++) u->bad += hits[i] != 1;
        free(hits);
    }
    return NULL;
}

static void test_concurrent_callers(void) {
    UserThread u[2] = {{.n = 97}, {.n = 13}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, user_thread, &u[k]);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    CHECK(u[0].bad == 0 && u[1].bad == 0, "two callers at once: %d and %d indices wrong",
          u[0].bad, u[1].bad);
}

// ----------------------------------------------------------------------------
// bl_gemm

static void test_gemm(void) {
    /* (M, N, K): cut along N (several blocks, ragged), along M, one block */
    int shapes[][3] = {{37, 1031, 77}, {1200, 300, 65}, {5, 40, 9}, {513, 512, 130}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            bool ta = t & 1, tb = t & 2;
            int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
            float *A = rnd((size_t)(ta ? K : M) * lda), *B = rnd((size_t)(tb ? N : K) * ldb);
            float *C = rnd((size_t)M * ldc), *C0 = malloc(sizeof(float) * M * ldc);
            memcpy(C0, C, sizeof(float) * M * ldc);
            float alpha = 0.75f, beta = -0.5f;
            bl_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            double worst = 0.0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = 0.0, mag = 0.0;
                    for (int k = 0; k < K; k++) {
                        double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                        double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                        acc += a * b;
                        mag += fabs(a * b);
                    }
                    double want = alpha * acc + beta * C0[(size_t)i * ldc + j];
                    /* float rounding of a K-term sum: at most ~K·2⁻²⁴ of Σ|a·b| */
                    double tol = (K + 2) * 0x1p-24 * (fabs(alpha) * mag + fabs(beta) + 1e-30);
                    worst = fmax(worst, fabs(C[(size_t)i * ldc + j] - want) / tol);
                }
            /* the padding of each row of C is untouched */
            int pad = 0;
            for (int i = 0; i < M; i++)
                for (int j = N; j < ldc; j++) pad += C[(size_t)i * ldc + j] != C0[(size_t)i * ldc + j];
            CHECK(worst <= 1.0 && pad == 0,
                  "gemm %dx%dx%d ta=%d tb=%d (%d blocks): error %.3g of the bound, %d pads written",
                  M, N, K, ta, tb, bl_gemm_blocks(M, N), worst, pad);
            free(A);
            free(B);
            free(C);
            free(C0);
        }
    CHECK(bl_gemm_blocks(512, 49152) == 16 && bl_gemm_blocks(512, 576) == 2 &&
              bl_gemm_blocks(64, 64) == 1,
          "block counts fixed by the shape");
}

// ----------------------------------------------------------------------------
// absmean and the fused Weff

static float serial_scale(const float *w, size_t n) {
    double sums[4096];
    size_t nb = 0;
    for (size_t i = 0; i < n; i += BL_ABSMEAN_BLOCK)
        sums[nb++] = bl_abs_sum_block(w + i, n - i < BL_ABSMEAN_BLOCK ? n - i : BL_ABSMEAN_BLOCK);
    return bl_wq_scale_of(sums, nb, n);
}

static void test_weff_merge(void) {
    /* (out, in, rank, dense): aligned row blocks (576, 1536 wide), an odd
     * width (merged first, summed after), a single short block */
    int shapes[][4] = {{576, 576, 16, 0}, {576, 1536, 8, 1}, {301, 33, 4, 1}, {7, 5, 0, 0},
                       {1536, 576, 32, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int out = shapes[s][0], in = shapes[s][1], r = shapes[s][2];
        size_t n = (size_t)out * in;
        float *w = rnd(n), *b = rnd((size_t)out * r), *a = rnd((size_t)r * in);
        float *dense = shapes[s][3] ? rnd(n) : NULL, *merged = malloc(sizeof(float) * n);
        BlMergeSpec m = {.w = w, .dense = dense, .lora_b = b, .lora_a = a, .rank = r,
                         .out = out, .in = in};
        float sc = bl_weff_merge(merged, &m);
        double worst = 0.0;
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                double acc = w[(size_t)o * in + i], mag = fabs(acc);
                for (int k = 0; k < r; k++) {
                    acc += (double)b[(size_t)o * r + k] * a[(size_t)k * in + i];
                    mag += fabs((double)b[(size_t)o * r + k] * a[(size_t)k * in + i]);
                }
                if (dense) {
                    acc += dense[(size_t)o * in + i];
                    mag += fabs(dense[(size_t)o * in + i]);
                }
                worst = fmax(worst, fabs(merged[(size_t)o * in + i] - acc) / ((r + 3) * 0x1p-24 * mag));
            }
        CHECK(worst <= 1.0, "merge %dx%d r=%d: error %.3g of the bound", out, in, r, worst);
        float s1 = bl_wq_scale(merged, n), s2 = serial_scale(merged, n);
        CHECK(sc == s1 && s1 == s2, "merge %dx%d: scale %.9g, bl_wq_scale %.9g, serial %.9g", out,
              in, sc, s1, s2);
        /* the built Weff is bl_weff of the merged matrix, bit for bit */
        float *weff = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
        bl_weff_build(weff, &m, 0.625f);
        bl_weff(want, merged, n, 0.625f);
        CHECK(memcmp(weff, want, sizeof(float) * n) == 0, "weff %dx%d differs from bl_weff", out, in);
        free(w);
        free(b);
        free(a);
        free(dense);
        free(merged);
        free(weff);
        free(want);
    }
}

// ----------------------------------------------------------------------------
// rope

static void test_rope_table(void) {
    int M = 300, nh = 3, hd = 64, half = hd / 2;
    int *pos = malloc(sizeof(int) * M);
    for (int m = 0; m < M; m++) pos[m] = m < 200 ? m : BL_ROPE_TABLE_MAX + m; /* past the table */
    for (int interleaved = 0; interleaved < 2; interleaved++) {
        size_t n = (size_t)M * nh * hd;
        float *x = rnd(n), *want = malloc(sizeof(float) * n), *orig = malloc(sizeof(float) * n);
        memcpy(want, x, sizeof(float) * n);
        memcpy(orig, x, sizeof(float) * n);
        float cs[32], sn[32];
        for (int m = 0; m < M; m++) {
            bl_rope_angles(cs, sn, pos[m], hd, 10000.0f);
            for (int i = 0; i < half; i++)
                for (int h = 0; h < nh; h++) {
                    float *v = want + ((size_t)m * nh + h) * hd;
                    int i0 = interleaved ? 2 * i : i, i1 = interleaved ? 2 * i + 1 : i + half;
                    float a = v[i0], b = v[i1];
                    v[i0] = a * cs[i] - b * sn[i];
                    v[i1] = a * sn[i] + b * cs[i];
                }
        }
        /* the table rows (positions < 200, in one call and in another that
         * needs no new table) and the fallback rows (beyond it) */
        bl_rope(x, pos, 200, nh, hd, 10000.0f, interleaved);
        bl_rope(x + (size_t)200 * nh * hd, pos + 200, M - 200, nh, hd, 10000.0f, interleaved);
        CHECK(memcmp(x, want, sizeof(float) * M * nh * hd) == 0, "rope (interleaved %d) differs "
              "from the per-row angles", interleaved);
        /* the backward is the inverse rotation: it brings x back to within
         * a few roundings of each pair's length (|x| < 1 here) */
        bl_rope_backward(x, pos, M, nh, hd, 10000.0f, interleaved);
        double worst = 0.0;
        for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(x[i] - orig[i]));
        CHECK(worst <= 8 * 0x1p-24 * 1.5, "rope then its backward: off by %g", worst);
        free(orig);
        free(x);
        free(want);
    }
    free(pos);
}

int main(void) {
    setenv("OPENBLAS_NUM_THREADS", "3", 1); /* before the pool's first use */
    unsetenv("OMP_NUM_THREADS");
    rand_seed_fresh("test_parallel");
    test_cover();
    test_concurrent_callers();
    test_gemm();
    test_weff_merge();
    test_rope_table();
    if (failures) {
        fprintf(stderr, "test_parallel: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_parallel: ok\n");
    return 0;
}
