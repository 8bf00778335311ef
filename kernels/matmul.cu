// matmul.cu - cuBLAS GEMMs with bf16 operands and fp32 accumulation, the
// fp32 GEMM of the adapters, and the small kernels around them (bf16
// conversion, bias add, bias gradient). See matmul.cuh.
#include "common.cuh"

// ----------------------------------------------------------------------------
// helpers

__global__ void f32_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

// src as bf16: the registered handle itself, or a rounded copy in `slot`
static const __nv_bfloat16 *as_bf16(const float *src, size_t n, int slot) {
    if (bl_cuda_is_bf16(src)) return (const __nv_bfloat16 *)src;
    __nv_bfloat16 *dst = (__nv_bfloat16 *)bl_cuda_scratch_(slot, n * sizeof(__nv_bfloat16));
    if (!dst) return NULL;
    BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), f32_to_bf16_kernel)(dst, src, n);
    return BL_LAUNCHED("f32_to_bf16") ? NULL : dst;
}

__global__ void add_bias_kernel(float *y, const float *bias, int M, int N) {
    size_t n = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += bias[i % N];
}

// db[n] += Σ_m dy[m, n]: one thread per column, rows walked in order (coalesced
// across the warp, deterministic)
__global__ void bias_grad_kernel(float *db, const float *dy, int M, int N) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    float acc = 0.0f;
    for (int m = 0; m < M; m++) acc += dy[(size_t)m * N + n];
    db[n] += acc;
}

// y^T = W·x^T in cuBLAS's column-major view: a row-major [r, c] matrix is a
// column-major [c, r] one, so y[M,N] = x·wᵀ is C[N,M] = op(W)·X.
static void gemm_bf16(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      const __nv_bfloat16 *A, int lda, const __nv_bfloat16 *B, int ldb, float beta,
                      float *C, int ldc) {
    const float one = 1.0f;
    BL_CUBLAS_CHECK(cublasGemmEx(bl_cublas_(), ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B,
                                 CUDA_R_16BF, ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

// ----------------------------------------------------------------------------
// the ops

extern "C" void bl_cuda_matmul(float *y, const float *x, const float *w, const float *bias, int M,
                               int N, int K) {
    if (M <= 0 || N <= 0) return;
    const __nv_bfloat16 *x16 = as_bf16(x, (size_t)M * K, BL_WS_X16);
    const __nv_bfloat16 *w16 = as_bf16(w, (size_t)N * K, BL_WS_W16);
    if (!x16 || !w16) return;
    gemm_bf16(CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w16, K, x16, K, 0.0f, y, N);
    if (bias) {
        BL_LAUNCH(bl_blocks((size_t)M * N, 256), 256, 0, bl_cuda_stream_(), add_bias_kernel)(y, bias, M, N);
        BL_LAUNCHED("add_bias");
    }
}

extern "C" void bl_cuda_matmul_backward(float *dx, float *dw, float *db, const float *dy,
                                        const float *x, const float *w, int M, int N, int K) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    const __nv_bfloat16 *dy16 = (dx || dw) ? as_bf16(dy, (size_t)M * N, BL_WS_DY16) : NULL;
    if ((dx || dw) && !dy16) return;
    if (dx) {  // dx[M,K] = dy[M,N]·w[N,K]  →  DX[K,M] = W[K,N]·DY[N,M]
        const __nv_bfloat16 *w16 = as_bf16(w, (size_t)N * K, BL_WS_W16);
        if (!w16) return;
        gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, w16, K, dy16, N, 0.0f, dx, K);
    }
    if (dw) {  // dw[N,K] += dyᵀ·x  →  DW[K,N] += X[K,M]·DY[N,M]ᵀ
        const __nv_bfloat16 *x16 = as_bf16(x, (size_t)M * K, BL_WS_X16);
        if (!x16) return;
        gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, x16, K, dy16, N, 1.0f, dw, K);
    }
    if (db) {
        BL_LAUNCH((N + 127) / 128, 128, 0, bl_cuda_stream_(), bias_grad_kernel)(db, dy, M, N);
        BL_LAUNCHED("bias_grad");
    }
}

extern "C" void bl_cuda_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                             int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (bl_cuda_is_bf16(A) || bl_cuda_is_bf16(B)) {
        BL_FAIL("gemm: a bf16 weight handle was passed to the fp32 GEMM");
        return;
    }
    // row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and the
    // stored row-major B already is Bᵀ in column-major terms
    BL_CUBLAS_CHECK(cublasSgemm(bl_cublas_(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb, A, lda,
                                &beta, C, ldc));
}
