/* gemm.c - bl_gemm of gemm.h. Blocks are at least BLOCK_MIN outputs wide
 * (narrower ones would repack the shared operand more often than they gain),
 * a power of two in number (an even share for 2, 4, 8 or 16 threads), and
 * start at multiples of 16 (whole micro-kernel tiles). */
#include "ops/gemm.h"

#include <cblas.h>

#include "ops/parallel.h"

enum { BLOCK_MIN = 256, MAX_BLOCKS = 16 };

typedef struct {
    bool ta, tb, split_n;
    int M, N, K, lda, ldb, ldc, blocks, dim;
    float alpha, beta;
    const float *A, *B;
    float *C;
} GemmJob;

int bl_gemm_blocks(int M, int N) {
    int dim = M > N ? M : N, p = 1;
    while (p * 2 <= MAX_BLOCKS && dim / (p * 2) >= BLOCK_MIN) p *= 2;
    return p;
}

static int block_start(const GemmJob *j, long b) {
    if (b >= j->blocks) return j->dim;
    return (int)((long)j->dim * b / j->blocks) / 16 * 16;
}

static void sgemm(const GemmJob *j, int M, int N, const float *A, const float *B, float *C) {
    cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans,
                M, N, j->K, j->alpha, A, j->lda, B, j->ldb, j->beta, C, j->ldc);
}

static void run_blocks(void *ctx, long b0, long b1) {
    const GemmJob *j = ctx;
    for (long b = b0; b < b1; b++) {
        int s = block_start(j, b), n = block_start(j, b + 1) - s;
        if (n <= 0) continue;
        if (j->split_n) /* columns s.. of C and of op(B) */
            sgemm(j, j->M, n, j->A, j->B + (j->tb ? (long)s * j->ldb : s), j->C + s);
        else /* rows s.. of C and of op(A) */
            sgemm(j, n, j->N, j->A + (j->ta ? s : (long)s * j->lda), j->B, j->C + (long)s * j->ldc);
    }
}

void bl_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    bl_parallel_threads(); /* starts the pool, which makes OpenBLAS single-threaded */
    GemmJob j = {.ta = ta, .tb = tb, .split_n = N >= M, .M = M, .N = N, .K = K, .lda = lda,
                 .ldb = ldb, .ldc = ldc, .blocks = bl_gemm_blocks(M, N), .dim = N >= M ? N : M,
                 .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C};
    if (j.blocks == 1) sgemm(&j, M, N, A, B, C);
    else bl_parallel_for(j.blocks, (long)M * N * (K > 0 ? K : 1), run_blocks, &j);
}
