// test_cuda_emu.cpp - the emulated device's own checks: small kernels
// (compiled like kernels/*.cu, with cuda_emu.h force-included) that must
// run right, and broken ones whose bug the emulator must report: a
// divergent __syncthreads, a shuffle a lane never reaches, launches over the
// device's limits, shared memory beyond 48 KiB without the opt-in, device
// memory beyond BITLAB_EMU_MEM_MIB, and cuBLAS / cuBLASLt semantics (beta =
// 0 ignores C, the int8 "TN" rules answer NOT_SUPPORTED).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BL_DYNAMIC_SHARED_TEST(type, name) type *const name = (type *)::bl_emu::dynamic_shared()
#define LAUNCH(grid, block, smem, ...) BL_EMU_LAUNCH(grid, block, smem, (cudaStream_t)0, __VA_ARGS__)

static int failures = 0;
#define CHECK(cond, ...)                                          \
    do {                                                          \
        if (!(cond)) {                                            \
            failures++;                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                         \
            fprintf(stderr, "\n");                                \
        }                                                         \
    } while (0)

// ----------------------------------------------------------------------------
// kernels

__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// out[block] = Σ x over the block's threads (two levels, two barriers)
__global__ void block_sum_kernel(float *out, const float *x) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float v = warp_sum(x[blockIdx.x * blockDim.x + threadIdx.x]);
    if (lane == 0) sh[w] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    v = warp_sum(v);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

// the same without the barrier: warp 0 reads sums not yet written
__global__ void block_sum_no_barrier_kernel(float *out, const float *x) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float v = warp_sum(x[blockIdx.x * blockDim.x + threadIdx.x]);
    if (lane == 0) sh[w] = v;
    v = lane < nw ? sh[lane] : 0.0f;
    v = warp_sum(v);
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

// threads past n return, the others meet at a barrier
__global__ void divergent_barrier_kernel(float *y, int n) {
    int i = threadIdx.x;
    if (i >= n) return;
    y[i] = 1.0f;
    __syncthreads();
    y[i] += 1.0f;
}

// lanes ≥ 16 skip the warp sum
__global__ void shuffle_exit_kernel(float *y) {
    float v = 1.0f;
    if (threadIdx.x < 16) v = warp_sum(v);
    y[threadIdx.x] = v;
}

// the two halves of a warp at different shuffles
__global__ void shuffle_mismatch_kernel(float *y) {
    float v = 1.0f;
    if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    else v = __shfl_down_sync(0xffffffffu, v, 1);
    y[threadIdx.x] = v;
}

__global__ void reduce_kernel(unsigned *y) {
    unsigned v = (threadIdx.x * 7919u) % 1000u;
    y[threadIdx.x] = __reduce_max_sync(0xffffffffu, v);
}

__global__ void shfl_down_kernel(int *y) {
    y[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 3);
}

__global__ void dyn_smem_kernel(float *y, int n) {
    BL_DYNAMIC_SHARED_TEST(float, s);
    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = (float)i;
    __syncthreads();
    if (threadIdx.x == 0) {
        double a = 0;
        for (int i = 0; i < n; i++) a += s[i];
        *y = (float)a;
    }
}

__global__ void atomic_kernel(float *y, const int *ids) { atomicAdd(&y[ids[threadIdx.x]], 1.0f); }

__global__ void index_kernel(unsigned *y) {
    unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    y[b * blockDim.x * blockDim.y * blockDim.z + t] = b * 1000 + t;
}

// ----------------------------------------------------------------------------
// helpers

template <typename T>
static T *dev(size_t n) {
    void *p = NULL;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc failed\n");
        exit(1);
    }
    return (T *)p;
}

// a launch the emulator must refuse or fail: the error comes back, and then
// the next synchronisation is clean again
static void expect_failure(cudaError_t want, const char *what) {
    cudaError_t e = cudaGetLastError();
    CHECK(e == want, "%s: cudaGetLastError = %s, want %s", what, cudaGetErrorName(e),
          cudaGetErrorName(want));
    cudaStreamSynchronize(0);  // may return it once more
    cudaGetLastError();
    CHECK(cudaStreamSynchronize(0) == cudaSuccess && cudaGetLastError() == cudaSuccess,
          "%s: the error did not clear", what);
}

static void expect_ok(const char *what) {
    cudaError_t e = cudaGetLastError();
    CHECK(e == cudaSuccess, "%s: %s", what, cudaGetErrorName(e));
    e = cudaStreamSynchronize(0);
    CHECK(e == cudaSuccess, "%s: sync: %s", what, cudaGetErrorName(e));
}

int main(void) {
    int n = 0;
    CHECK(cudaGetDeviceCount(&n) == cudaSuccess && n == 1, "one device");
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major == 9 &&
              prop.maxThreadsPerBlock == 1024 && prop.sharedMemPerBlock == 48 * 1024,
          "sm_90-like properties");

    // a correct reduction, 3 blocks of 256
    enum { B = 3, T = 256 };
    float hx[B * T], hout[B];
    double want[B] = {0, 0, 0};
    for (int i = 0; i < B * T; i++) {
        hx[i] = (float)((i * 37) % 101) / 7.0f;
        want[i / T] += hx[i];
    }
    float *x = dev<float>(B * T), *out = dev<float>(B);
    cudaMemcpy(x, hx, sizeof hx, cudaMemcpyHostToDevice);
    LAUNCH(B, T, 0, block_sum_kernel)(out, x);
    expect_ok("block_sum");
    cudaMemcpy(hout, out, sizeof hout, cudaMemcpyDeviceToHost);
    for (int b = 0; b < B; b++)
        CHECK(fabs(hout[b] - want[b]) < 1e-3 * fabs(want[b]), "block_sum[%d] = %g, want %g", b,
              hout[b], want[b]);

    // without the barrier the result is wrong (the shared sums are 0xff
    // bytes = NaN until written; under ASan stale values of the last block).
    // Under TSan the race itself is reported: that is the barrier mutant's test.
#if !defined(__SANITIZE_THREAD__)
    LAUNCH(B, T, 0, block_sum_no_barrier_kernel)(out, x);
    cudaGetLastError();
    cudaMemcpy(hout, out, sizeof hout, cudaMemcpyDeviceToHost);
    bool wrong = false;
    for (int b = 0; b < B; b++) wrong |= !(fabs(hout[b] - want[b]) < 1e-3 * fabs(want[b]));
    CHECK(wrong, "a removed barrier went unnoticed");
#endif

    float *y = dev<float>(1024);
    LAUNCH(1, 64, 0, divergent_barrier_kernel)(y, 40);
    expect_failure(cudaErrorLaunchFailure, "divergent __syncthreads");
    LAUNCH(1, 64, 0, divergent_barrier_kernel)(y, 64);
    expect_ok("uniform __syncthreads");

    LAUNCH(1, 32, 0, shuffle_exit_kernel)(y);
    expect_failure(cudaErrorLaunchFailure, "a shuffle half the warp skips");
    LAUNCH(1, 32, 0, shuffle_mismatch_kernel)(y);
    expect_failure(cudaErrorLaunchFailure, "lanes at different shuffles");
    LAUNCH(1, 48, 0, block_sum_kernel)(out, x);
    expect_failure(cudaErrorLaunchFailure, "a full-mask shuffle in a 16-lane warp");

    unsigned *u = dev<unsigned>(4096);
    unsigned hu[32];
    LAUNCH(1, 32, 0, reduce_kernel)(u);
    expect_ok("__reduce_max_sync");
    cudaMemcpy(hu, u, sizeof hu, cudaMemcpyDeviceToHost);
    unsigned mx = 0;
    for (unsigned i = 0; i < 32; i++) mx = (i * 7919u) % 1000u > mx ? (i * 7919u) % 1000u : mx;
    for (int i = 0; i < 32; i++) CHECK(hu[i] == mx, "__reduce_max_sync lane %d: %u, want %u", i, hu[i], mx);

    int *iy = dev<int>(32), hi[32];
    LAUNCH(1, 32, 0, shfl_down_kernel)(iy);
    expect_ok("__shfl_down_sync");
    cudaMemcpy(hi, iy, sizeof hi, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 32; i++)
        CHECK(hi[i] == (i + 3 < 32 ? i + 3 : i), "__shfl_down_sync lane %d: %d", i, hi[i]);

    LAUNCH(dim3(2, 3, 2), dim3(4, 2, 3), 0, index_kernel)(u);
    expect_ok("3-d indices");
    static unsigned hidx[12 * 24];
    cudaMemcpy(hidx, u, sizeof hidx, cudaMemcpyDeviceToHost);
    bool idx_ok = true;
    for (int b = 0; b < 12; b++)
        for (int t = 0; t < 24; t++) idx_ok &= hidx[b * 24 + t] == (unsigned)(b * 1000 + t);
    CHECK(idx_ok, "3-d grid and block indices");

    // limits
    LAUNCH(1, 1025, 0, index_kernel)(u);
    expect_failure(cudaErrorInvalidConfiguration, "1025 threads per block");
    LAUNCH(1, dim3(1, 1, 65), 0, index_kernel)(u);
    expect_failure(cudaErrorInvalidConfiguration, "blockDim.z = 65");
    LAUNCH(dim3(1, 65536, 1), 32, 0, index_kernel)(u);
    expect_failure(cudaErrorInvalidConfiguration, "gridDim.y = 65536");

    // dynamic shared memory: 64 KiB needs the opt-in
    int ns = 16384;
    LAUNCH(1, 256, ns * sizeof(float), dyn_smem_kernel)(out, ns);
    expect_failure(cudaErrorInvalidValue, "64 KiB of dynamic shared memory without the opt-in");
    CHECK(cudaFuncSetAttribute((const void *)dyn_smem_kernel,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, ns * 4) == cudaSuccess,
          "opt-in");
    LAUNCH(1, 256, ns * sizeof(float), dyn_smem_kernel)(out, ns);
    expect_ok("64 KiB of dynamic shared memory after the opt-in");
    float hs;
    cudaMemcpy(&hs, out, sizeof hs, cudaMemcpyDeviceToHost);
    CHECK(hs == (float)ns * (ns - 1) / 2, "dynamic shared sum %g", hs);
    CHECK(cudaFuncSetAttribute((const void *)dyn_smem_kernel,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, 300000) ==
              cudaErrorInvalidValue, "an opt-in beyond 227 KiB is refused");
    cudaGetLastError();

    // atomics
    int hid[256];
    for (int i = 0; i < 256; i++) hid[i] = i % 5;
    int *ids = dev<int>(256);
    cudaMemcpy(ids, hid, sizeof hid, cudaMemcpyHostToDevice);
    cudaMemset(y, 0, 5 * sizeof(float));
    LAUNCH(1, 256, 0, atomic_kernel)(y, ids);
    expect_ok("atomicAdd");
    float hy[5];
    cudaMemcpy(hy, y, sizeof hy, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 5; i++) CHECK(hy[i] == (i == 0 ? 52 : 51), "atomicAdd bin %d: %g", i, hy[i]);

    // copies outside allocations are refused
    CHECK(cudaMemcpy(y + 1020, hy, sizeof hy, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the end of an allocation");
    cudaGetLastError();

    // memory: BITLAB_EMU_MEM_MIB (64 in ctest) bounds cudaMalloc
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    void *big = NULL;
    CHECK(cudaMalloc(&big, tot) == cudaErrorMemoryAllocation && big == NULL,
          "cudaMalloc of the whole device (%zu bytes) with some in use", tot);
    CHECK(cudaGetLastError() == cudaErrorMemoryAllocation, "the OOM is the last error");
    CHECK(cudaMalloc(&big, fr / 2) == cudaSuccess, "half the free memory");
    size_t fr2 = 0;
    cudaMemGetInfo(&fr2, &tot);
    CHECK(fr2 == fr - fr / 2, "cudaMemGetInfo counts allocations");
    cudaFree(big);

    // cuBLAS: beta = 0 does not read C (NaN there), lda < m is refused
    cublasHandle_t h;
    cublasCreate(&h);
    float A[6] = {1, 2, 3, 4, 5, 6}, Bm[6] = {1, 0, 1, 0, 1, 0}, C[4];
    for (int i = 0; i < 4; i++) C[i] = NAN;
    float *dA = dev<float>(6), *dB = dev<float>(6), *dC = dev<float>(4);
    cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, Bm, sizeof Bm, cudaMemcpyHostToDevice);
    cudaMemcpy(dC, C, sizeof C, cudaMemcpyHostToDevice);
    const float one = 1.0f, zero = 0.0f;
    // C[2x2] = A[2x3]·B[3x2], column-major
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA, 2, dB, 3, &zero, dC, 2) ==
              CUBLAS_STATUS_SUCCESS, "sgemm");
    cudaMemcpy(C, dC, sizeof C, cudaMemcpyDeviceToHost);
    // A = [1 3 5; 2 4 6], B = [1 0; 0 1; 1 0] -> C = [6 3; 8 4]
    CHECK(C[0] == 6 && C[1] == 8 && C[2] == 3 && C[3] == 4, "sgemm values %g %g %g %g", C[0], C[1],
          C[2], C[3]);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, dA, 1, dB, 3, &zero, dC, 2) ==
              CUBLAS_STATUS_INVALID_VALUE, "lda < m is refused");
    cublasDestroy(h);

    // cuBLASLt int8: m = 6 is not a multiple of 4
    cublasLtHandle_t lt;
    cublasLtCreate(&lt);
    for (int m : {8, 6}) {
        int k = 16, nn = 4;
        cublasLtMatmulDesc_t op;
        cublasLtMatrixLayout_t la, lb, lc;
        cublasLtMatmulPreference_t pref;
        cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
        cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB);
        cublasLtMatrixLayoutCreate(&la, CUDA_R_8I, k, m, k);
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_8I, k, nn, k);
        cublasLtMatrixLayoutCreate(&lc, CUDA_R_32I, m, nn, m);
        cublasLtMatmulPreferenceCreate(&pref);
        cublasLtMatmulHeuristicResult_t res;
        int found = 0;
        cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 1, &res, &found);
        if (m == 6) {
            CHECK(s == CUBLAS_STATUS_NOT_SUPPORTED && found == 0, "int8 m = 6 must be unsupported");
        } else {
            CHECK(s == CUBLAS_STATUS_SUCCESS && found == 1, "int8 m = 8");
            int8_t ha[16 * 8], hb[16 * 4];
            for (int i = 0; i < 16 * 8; i++) ha[i] = (int8_t)((i % 7) - 3);
            for (int i = 0; i < 16 * 4; i++) hb[i] = (int8_t)((i % 5) - 2);
            int8_t *da = dev<int8_t>(sizeof ha), *db = dev<int8_t>(sizeof hb);
            int32_t *dc = dev<int32_t>(8 * 4), hc[32];
            cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
            cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
            const int32_t i1 = 1, i0 = 0;
            CHECK(cublasLtMatmul(lt, op, &i1, da, la, db, lb, &i0, dc, lc, dc, lc, &res.algo, NULL, 0,
                                 0) == CUBLAS_STATUS_SUCCESS, "int8 matmul");
            cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost);
            bool ok = true;
            for (int j = 0; j < nn; j++)
                for (int i = 0; i < m; i++) {
                    int32_t a = 0;
                    for (int l = 0; l < k; l++) a += ha[l + i * k] * hb[l + j * k];
                    ok &= hc[i + j * m] == a;
                }
            CHECK(ok, "int8 matmul values (C = Aᵀ·B)");
            CHECK(cublasLtMatmul(lt, op, &i1, da + 1, la, db, lb, &i0, dc, lc, dc, lc, &res.algo,
                                 NULL, 0, 0) == CUBLAS_STATUS_NOT_SUPPORTED,
                  "a misaligned int8 operand must be unsupported");
        }
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(lc);
        cublasLtMatrixLayoutDestroy(lb);
        cublasLtMatrixLayoutDestroy(la);
        cublasLtMatmulDescDestroy(op);
    }
    cublasLtDestroy(lt);

    if (failures) fprintf(stderr, "test_cuda_emu: %d check(s) failed\n", failures);
    else printf("test_cuda_emu: all checks passed\n");
    return failures ? 1 : 0;
}
