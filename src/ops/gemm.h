/* gemm.h - every fp32 matrix product of bitlab: row-major sgemm
 *   C[M,N] = alpha·op(A)[M,K]·op(B)[K,N] + beta·C
 * (op = transpose when ta / tb), cut along the larger of M and N into blocks
 * fixed by the shape alone and run on the worker pool (ops/parallel.h), one
 * single-threaded OpenBLAS call per block. The same shape makes the same
 * calls whatever the thread count, so the bits do not depend on it. */
#ifndef BITLAB_GEMM_H
#define BITLAB_GEMM_H

#include <stdbool.h>

void bl_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

/* The number of blocks bl_gemm cuts a product of M x N outputs into. */
int bl_gemm_blocks(int M, int N);

#endif
