/* matmul.cuh - GEMMs through cuBLAS. CPU twins: bl_matmul and
 * bl_matmul_backward (ops/ops.h) and cblas_sgemm (the LoRA products).
 *
 * matmul / matmul_backward: bf16 operands, fp32 accumulate and output
 * (cublasGemmEx, CUBLAS_COMPUTE_32F). A weight that is a registered bf16
 * handle (context.cuh) is used as it is; an fp32 operand is rounded to bf16
 * in scratch first. Biases and db stay fp32.
 * gemm: plain fp32 (cublasSgemm), for the small adapter products where
 * bf16 would swamp the LoRA update. */
#ifndef BITLAB_KERNELS_MATMUL_CUH
#define BITLAB_KERNELS_MATMUL_CUH

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[M,N] = x[M,K]·w[N,K]ᵀ (+ bias[N]) */
void bl_cuda_matmul(float *y, const float *x, const float *w, const float *bias, int M, int N,
                    int K);
/* dx[M,K] = dy·w ; dw[N,K] += dyᵀ·x ; db[N] += Σ_rows dy */
void bl_cuda_matmul_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, int M, int N, int K);
/* Row-major C[M,N] = alpha·op(A)·op(B) + beta·C, op = transpose when ta/tb,
 * as cblas_sgemm(CblasRowMajor, ...). fp32 throughout. */
void bl_cuda_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc);

#ifdef __cplusplus
}
#endif

#endif
