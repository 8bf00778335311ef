// emu_cublas.cpp - cuBLAS and cuBLASLt for the emulated device: the calls
// kernels/matmul.cu and kernels/ternary_gemm.cu make, as column-major
// reference GEMMs with NVIDIA's documented semantics
//
//   C = alpha·op(A)·op(B) + beta·C, op(A) m×k, op(B) k×n, C m×n,
//   A stored lda-strided as m×k (N) or k×m (T), likewise B; beta = 0 means
//   C is not read (NaN there does not propagate); lda < rows, a negative
//   size or an unknown type is CUBLAS_STATUS_INVALID_VALUE,
//
// accumulated in double and rounded once (fp32 outputs), or exactly in int32
// (the int8 IMMA path). cublasLtMatmulAlgoGetHeuristic and cublasLtMatmul
// answer CUBLAS_STATUS_NOT_SUPPORTED where cuBLASLt's int8 rules
// (cublasLtMatmul, "To use IMMA kernels", regular column order) would: A
// transposed and B not ("TN"), m and k multiples of 4, lda/ldb/ldc multiples
// of 4, every matrix pointer 4-byte aligned, int32 scale type.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace {

struct Handle {
    cudaStream_t stream;
};

struct MatmulDesc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    cublasOperation_t ta, tb;
};

struct Layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};

struct Pref {
    size_t max_ws;
};

double load(const void *p, cudaDataType_t t, size_t i) {
    switch (t) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_64F: return ((const double *)p)[i];
    case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    case CUDA_R_16F: return __half2float(((const __half *)p)[i]);
    case CUDA_R_8I: return ((const int8_t *)p)[i];
    case CUDA_R_32I: return ((const int32_t *)p)[i];
    default: return 0;
    }
}

bool known_type(cudaDataType_t t) {
    return t == CUDA_R_32F || t == CUDA_R_64F || t == CUDA_R_16BF || t == CUDA_R_16F ||
           t == CUDA_R_8I || t == CUDA_R_32I;
}

// the shape checks every cuBLAS GEMM does
cublasStatus_t check_shape(cublasOperation_t ta, cublasOperation_t tb, long m, long n, long k,
                           long lda, long ldb, long ldc) {
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    long arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

// C[i + j·ldc] = alpha·Σ_l op(A)[i, l]·op(B)[l, j] + beta·C (C read only when beta ≠ 0)
void gemm_ref(cublasOperation_t ta, cublasOperation_t tb, long m, long n, long k, double alpha,
              const void *A, cudaDataType_t at, long lda, const void *B, cudaDataType_t bt,
              long ldb, double beta, void *C, cudaDataType_t ct, long ldc) {
    for (long j = 0; j < n; j++)
        for (long i = 0; i < m; i++) {
            double acc = 0;
            for (long l = 0; l < k; l++) {
                size_t ai = ta == CUBLAS_OP_N ? (size_t)i + (size_t)l * lda : (size_t)l + (size_t)i * lda;
                size_t bi = tb == CUBLAS_OP_N ? (size_t)l + (size_t)j * ldb : (size_t)j + (size_t)l * ldb;
                acc += load(A, at, ai) * load(B, bt, bi);
            }
            size_t ci = (size_t)i + (size_t)j * ldc;
            double v = alpha * acc + (beta != 0 ? beta * load(C, ct, ci) : 0.0);
            if (ct == CUDA_R_32F) ((float *)C)[ci] = (float)v;
            else if (ct == CUDA_R_64F) ((double *)C)[ci] = v;
            else if (ct == CUDA_R_16BF) ((__nv_bfloat16 *)C)[ci] = __float2bfloat16_rn((float)v);
            else if (ct == CUDA_R_16F) ((__half *)C)[ci] = __float2half_rn((float)v);
        }
}

// int8 × int8 → int32, exact (wrapping as the hardware's int32 accumulator)
void gemm_i8(cublasOperation_t ta, cublasOperation_t tb, long m, long n, long k, int32_t alpha,
             const int8_t *A, long lda, const int8_t *B, long ldb, int32_t beta, const int32_t *C,
             long ldc, int32_t *D, long ldd) {
    for (long j = 0; j < n; j++)
        for (long i = 0; i < m; i++) {
            uint32_t acc = 0;
            for (long l = 0; l < k; l++) {
                size_t ai = ta == CUBLAS_OP_N ? (size_t)i + (size_t)l * lda : (size_t)l + (size_t)i * lda;
                size_t bi = tb == CUBLAS_OP_N ? (size_t)l + (size_t)j * ldb : (size_t)j + (size_t)l * ldb;
                acc += (uint32_t)((int32_t)A[ai] * (int32_t)B[bi]);
            }
            uint32_t v = (uint32_t)alpha * acc;
            if (beta != 0) v += (uint32_t)beta * (uint32_t)C[(size_t)i + (size_t)j * ldc];
            D[(size_t)i + (size_t)j * ldd] = (int32_t)v;
        }
}

bool aligned4(const void *p) { return ((uintptr_t)p & 3) == 0; }

// cuBLASLt's int8 IMMA rules for the regular (column) order
cublasStatus_t lt_int8_supported(const MatmulDesc *d, const Layout *a, const Layout *b,
                                 const Layout *c, long m, long k, const void *pa, const void *pb,
                                 const void *pc, const void *pd) {
    if (d->ta != CUBLAS_OP_T || d->tb != CUBLAS_OP_N) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m % 4 || k % 4) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (a->ld % 4 || b->ld % 4 || c->ld % 4) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!aligned4(pa) || !aligned4(pb) || !aligned4(pc) || !aligned4(pd))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (d->scale != CUDA_R_32I || c->type != CUDA_R_32I) return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}

// the dimensions of op(A)·op(B) = C from the layouts, or INVALID_VALUE
cublasStatus_t lt_dims(const MatmulDesc *d, const Layout *a, const Layout *b, const Layout *c,
                       long *m, long *n, long *k) {
    long am = d->ta == CUBLAS_OP_N ? (long)a->rows : (long)a->cols;
    long ak = d->ta == CUBLAS_OP_N ? (long)a->cols : (long)a->rows;
    long bk = d->tb == CUBLAS_OP_N ? (long)b->rows : (long)b->cols;
    long bn = d->tb == CUBLAS_OP_N ? (long)b->cols : (long)b->rows;
    if (ak != bk || am != (long)c->rows || bn != (long)c->cols) return CUBLAS_STATUS_INVALID_VALUE;
    if (a->ld < (long)a->rows || b->ld < (long)b->rows || c->ld < (long)c->rows)
        return CUBLAS_STATUS_INVALID_VALUE;
    *m = am;
    *n = bn;
    *k = ak;
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

// ----------------------------------------------------------------------------
// cuBLAS

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    *h = (cublasHandle_t) new Handle{nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
    delete (Handle *)h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    ((Handle *)h)->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, const float *alpha, const float *A, int lda,
                              const float *B, int ldb, const float *beta, float *C, int ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    cublasStatus_t s = check_shape(ta, tb, m, n, k, lda, ldb, ldc);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    gemm_ref(ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, *beta, C, CUDA_R_32F,
             ldc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType at,
                            int lda, const void *B, cudaDataType bt, int ldb, const void *beta,
                            void *C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    (void)algo;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    cublasStatus_t s = check_shape(ta, tb, m, n, k, lda, ldb, ldc);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (!known_type(at) || !known_type(bt) || !known_type(ct) || at != bt)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    double a, b;
    switch (compute) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
        // alpha, beta are floats; bf16/fp16/fp32 inputs with an fp32 or a
        // 16-bit output of the same type
        if (ct != CUDA_R_32F && ct != at) return CUBLAS_STATUS_NOT_SUPPORTED;
        a = *(const float *)alpha;
        b = *(const float *)beta;
        break;
    case CUBLAS_COMPUTE_64F:
        if (at != CUDA_R_64F || ct != CUDA_R_64F) return CUBLAS_STATUS_NOT_SUPPORTED;
        a = *(const double *)alpha;
        b = *(const double *)beta;
        break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    gemm_ref(ta, tb, m, n, k, a, A, at, lda, B, bt, ldb, b, C, ct, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

// ----------------------------------------------------------------------------
// cuBLASLt

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = (cublasLtHandle_t) new Handle{nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete (Handle *)h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    *d = (cublasLtMatmulDesc_t) new MatmulDesc{compute, scale, CUBLAS_OP_N, CUBLAS_OP_N};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete (MatmulDesc *)d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t dp,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    MatmulDesc *d = (MatmulDesc *)dp;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        int32_t v;
        memcpy(&v, buf, sizeof v);
        if (v != CUBLAS_OP_N && v != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->ta : d->tb) = (cublasOperation_t)v;
        return CUBLAS_STATUS_SUCCESS;
    }
    default:
        // anything else (epilogues, pointer modes) the emulator does not model
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (ld < 0) return CUBLAS_STATUS_INVALID_VALUE;
    *l = (cublasLtMatrixLayout_t) new Layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete (Layout *)l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = (cublasLtMatmulPreference_t) new Pref{0};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete (Pref *)p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t size) {
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (size != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&((Pref *)p)->max_ws, buf, sizeof(uint64_t));
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// one "algorithm" when the operation is supported (pointers are not known
// here: alignment is checked at cublasLtMatmul, as cuBLASLt does)
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t dp,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *res, int *found) {
    (void)pref;
    *found = 0;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (requested <= 0) return CUBLAS_STATUS_INVALID_VALUE;
    const MatmulDesc *md = (const MatmulDesc *)dp;
    const Layout *la = (const Layout *)a, *lb = (const Layout *)b, *lc = (const Layout *)c,
                 *ld = (const Layout *)d;
    long m, n, k;
    cublasStatus_t s = lt_dims(md, la, lb, lc, &m, &n, &k);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (ld->rows != lc->rows || ld->cols != lc->cols || ld->type != lc->type)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (md->compute != CUBLAS_COMPUTE_32I || la->type != CUDA_R_8I || lb->type != CUDA_R_8I)
        return CUBLAS_STATUS_NOT_SUPPORTED;  // the emulator models the int8 path only
    // 16-byte aligned stand-ins: only the shape rules apply here
    static const int32_t al[4] = {0, 0, 0, 0};
    s = lt_int8_supported(md, la, lb, lc, m, k, al, al, al, al);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    memset(res, 0, sizeof *res);
    res->algo.data[0] = 0x1e7;  // marks an emulator algorithm
    res->workspaceSize = 0;
    res->state = CUBLAS_STATUS_SUCCESS;
    res->wavesCount = 1.0f;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t dp, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t a, const void *B,
                              cublasLtMatrixLayout_t b, const void *beta, const void *C,
                              cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes,
                              cudaStream_t stream) {
    (void)ws;
    (void)ws_bytes;
    (void)stream;
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    const MatmulDesc *md = (const MatmulDesc *)dp;
    const Layout *la = (const Layout *)a, *lb = (const Layout *)b, *lc = (const Layout *)c,
                 *ldd = (const Layout *)d;
    long m, n, k;
    cublasStatus_t s = lt_dims(md, la, lb, lc, &m, &n, &k);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (ldd->rows != lc->rows || ldd->cols != lc->cols || ldd->ld < (long)ldd->rows)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (algo && algo->data[0] != 0x1e7) return CUBLAS_STATUS_INVALID_VALUE;
    if (md->compute != CUBLAS_COMPUTE_32I || la->type != CUDA_R_8I || lb->type != CUDA_R_8I)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    s = lt_int8_supported(md, la, lb, lc, m, k, A, B, C, D);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    int32_t al, be;
    memcpy(&al, alpha, sizeof al);
    memcpy(&be, beta, sizeof be);
    gemm_i8(md->ta, md->tb, m, n, k, al, (const int8_t *)A, la->ld, (const int8_t *)B, lb->ld, be,
            (const int32_t *)C, lc->ld, (int32_t *)D, ldd->ld);
    return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
