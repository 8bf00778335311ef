// ternary_gemm.cu - int8 × ternary int8 → int32 GEMM (cuBLASLt, or an own
// __dp4a kernel) and the scaling epilogue (see ternary_gemm.cuh).
#include "quant_internal.cuh"

// ----------------------------------------------------------------------------
// own kernel: acc[M, N] = xq[M, Kp]·wq[N, Kp]ᵀ, tiles of 32×32 outputs, K in
// chunks of 64 bytes; Kp is a multiple of 16, rows 4-byte aligned

enum { TT = 32, TK = 16 };  // tile edge; int32 words (4 int8 each) per K chunk

__global__ void dp4a_gemm_kernel(int32_t *acc, const int8_t *xq, const int8_t *wq, int M, int N,
                                 int Kp) {
    __shared__ int Xs[TT][TK + 1], Ws[TT][TK + 1];
    int tx = threadIdx.x, ty = threadIdx.y;  // 32 × 8
    int n = blockIdx.x * TT + tx, m0 = blockIdx.y * TT;
    int kw = Kp / 4;
    const int *X = (const int *)xq, *W = (const int *)wq;
    int a[4] = {0, 0, 0, 0};
    for (int k0 = 0; k0 < kw; k0 += TK) {
        // 256 threads load 32 rows × 16 words of each operand
        for (int e = ty * TT + tx; e < TT * TK; e += TT * 8) {
            int r = e / TK, c = e % TK, k = k0 + c;
            int mr = m0 + r, nr = blockIdx.x * TT + r;
            Xs[r][c] = (mr < M && k < kw) ? X[(size_t)mr * kw + k] : 0;
            Ws[r][c] = (nr < N && k < kw) ? W[(size_t)nr * kw + k] : 0;
        }
        __syncthreads();
        for (int c = 0; c < TK; c++)
            for (int j = 0; j < 4; j++) a[j] = __dp4a(Xs[ty + 8 * j][c], Ws[tx][c], a[j]);
        __syncthreads();
    }
    for (int j = 0; j < 4; j++) {
        int m = m0 + ty + 8 * j;
        if (m < M && n < N) acc[(size_t)m * N + n] = a[j];
    }
}

// ----------------------------------------------------------------------------
// cuBLASLt: column-major C[N, M] = A[Kp, N]ᵀ·B[Kp, M] (the int8 "TN" layout)

static int lt_int8_gemm(int32_t *acc, const int8_t *xq, const int8_t *wq, int M, int N, int Kp) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
    size_t ws_bytes = 4u << 20;
    void *ws = bl_cuda_scratch_(BL_WS_LT, ws_bytes);
    int rc = -1;
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    if (!ws) return -1;
    // status codes other than success mean "no such algorithm here": the
    // caller falls back to the own kernel, so they are not recorded as errors
    if (cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA) ||
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB) ||
        cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, Kp, N, Kp) ||
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, Kp, M, Kp) ||
        cublasLtMatrixLayoutCreate(&lc, CUDA_R_32I, N, M, N) ||
        cublasLtMatmulPreferenceCreate(&pref) ||
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &ws_bytes, sizeof ws_bytes) ||
        cublasLtMatmulAlgoGetHeuristic(bl_cublaslt_(), op, la, lb, lc, lc, pref, 1, &h, &found) ||
        found == 0)
        goto done;
    {
        const int32_t one = 1, zero = 0;
        rc = BL_CUBLAS_CHECK(cublasLtMatmul(bl_cublaslt_(), op, &one, wq, la, xq, lb, &zero, acc,
                                            lc, acc, lc, &h.algo, ws, ws_bytes,
                                            bl_cuda_stream_())) ? -2 : 0;
    }
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}

// ----------------------------------------------------------------------------
// epilogue and entry

__global__ void ternary_scale_kernel(float *y, const int32_t *acc, const float *sx,
                                     const float *sw, const float *bias, int M, int N) {
    size_t n = (size_t)M * N;
    float s_w = *sw;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < n;
         t += (size_t)gridDim.x * blockDim.x) {
        int m = (int)(t / N), c = (int)(t % N);
        float v = (float)acc[t] / (sx[m] * s_w);
        y[t] = bias ? v + bias[c] : v;
    }
}

extern "C" int bl_cuda_ternary_matmul(float *y, const float *x, const BlCudaWeff *spec,
                                      const float *bias, int M, int bits, BlError *err) {
    int Q = bits == 8 ? 127 : bits == 4 ? 7 : -1;
    if (Q < 0) return bl_fail(err, "ternary matmul: activation width %d is not 8 or 4", bits);
    if (spec->lambda != 1.0f)
        return bl_fail(err, "ternary matmul: lambda is %g; the integer path needs lambda = 1",
                       (double)spec->lambda);
    int N = spec->out, K = spec->in;
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    int Kp = (K + 15) / 16 * 16;
    cudaStream_t st = bl_cuda_stream_();
    int8_t *xq = (int8_t *)bl_cuda_scratch_(BL_WS_I8A, (size_t)M * Kp);
    int8_t *wq = (int8_t *)bl_cuda_scratch_(BL_WS_I8W, (size_t)N * Kp);
    // int32 products, then the row scales sx[M] and the weight scale
    int32_t *acc = (int32_t *)bl_cuda_scratch_(BL_WS_I32, sizeof(int32_t) * ((size_t)M * N + M + 1));
    if (!xq || !wq || !acc) return 0;  // recorded for the next sync
    float *sx = (float *)(acc + (size_t)M * N), *sw = sx + M;
    // the padding columns must be zero: they enter the dot products
    if (Kp != K && (BL_CUDA_CHECK(cudaMemsetAsync(xq, 0, (size_t)M * Kp, st)) ||
                    BL_CUDA_CHECK(cudaMemsetAsync(wq, 0, (size_t)N * Kp, st))))
        return 0;
    if (bl_cuda_actq_int8_(xq, Kp, sx, x, M, K, Q) || bl_cuda_weff_int8_(wq, Kp, sw, spec)) return 0;
    int lt = bl_cuda_int8_engine_() == 0 ? lt_int8_gemm(acc, xq, wq, M, N, Kp) : -1;
    if (lt == -2) return 0;  // cuBLASLt failed while running: recorded
    if (lt != 0) {
        dim3 block(TT, 8), grid((N + TT - 1) / TT, (M + TT - 1) / TT);
        BL_LAUNCH(grid, block, 0, st, dp4a_gemm_kernel)(acc, xq, wq, M, N, Kp);
        if (BL_LAUNCHED("dp4a_gemm")) return 0;
    }
    BL_LAUNCH(bl_blocks((size_t)M * N, 256), 256, 0, st, ternary_scale_kernel)(y, acc, sx, sw, bias, M, N);
    BL_LAUNCHED("ternary_scale");
    return 0;
}
