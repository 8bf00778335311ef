// rmsnorm.cu - RMSNorm: one block per row for the forward and for dx, one
// thread per column for dg (see rmsnorm.cuh).
#include "common.cuh"

static unsigned row_threads(int D) {
    unsigned t = (unsigned)((D + 31) / 32 * 32);
    return t < 32 ? 32 : (t > 256 ? 256 : t);
}

__global__ void rmsnorm_kernel(float *y, float *rstd, const float *x, const float *g, int D,
                               float eps) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    const float *xr = x + row * D;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
    ss = bl_block_sum(ss, sh);
    float r = (float)(1.0 / sqrt((double)ss / D + (double)eps));
    float *yr = y + row * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) yr[i] = xr[i] * r * g[i];
    if (rstd && threadIdx.x == 0) rstd[row] = r;
}

// dg[i] += Σ_m dy[m,i]·x[m,i]·rstd[m]; runs before dx, which may overwrite dy
__global__ void rmsnorm_dg_kernel(float *dg, const float *dy, const float *x, const float *rstd,
                                  int M, int D) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D) return;
    float acc = 0.0f;
    for (int m = 0; m < M; m++) {
        size_t o = (size_t)m * D + i;
        acc += dy[o] * (x[o] * rstd[m]);
    }
    dg[i] += acc;
}

// dx = r·(dy·g − x̂·mean(dy·g·x̂)); every dy of the row is read before any dx
// is written (the reduction's barrier), so dx may alias dy
__global__ void rmsnorm_dx_kernel(float *dx, const float *dy, const float *x, const float *g,
                                  const float *rstd, int D) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    const float *xr = x + row * D, *dyr = dy + row * D;
    float r = rstd[row], dot = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) dot += dyr[i] * g[i] * (xr[i] * r);
    dot = bl_block_sum(dot, sh);
    float c = dot / D;
    float *dxr = dx + row * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) dxr[i] = r * (dyr[i] * g[i] - xr[i] * r * c);
}

extern "C" void bl_cuda_rmsnorm(float *y, float *rstd, const float *x, const float *g, int M,
                                int D, float eps) {
    if (M <= 0 || D <= 0) return;
    BL_LAUNCH(M, row_threads(D), 0, bl_cuda_stream_(), rmsnorm_kernel)(y, rstd, x, g, D, eps);
    BL_LAUNCHED("rmsnorm");
}

extern "C" void bl_cuda_rmsnorm_backward(float *dx, float *dg, const float *dy, const float *x,
                                         const float *g, const float *rstd, int M, int D) {
    if (M <= 0 || D <= 0) return;
    if (dg) {
        BL_LAUNCH((D + 127) / 128, 128, 0, bl_cuda_stream_(), rmsnorm_dg_kernel)(dg, dy, x, rstd, M, D);
        BL_LAUNCHED("rmsnorm_dg");
    }
    if (dx) {
        BL_LAUNCH(M, row_threads(D), 0, bl_cuda_stream_(), rmsnorm_dx_kernel)(dx, dy, x, g, rstd, D);
        BL_LAUNCHED("rmsnorm_dx");
    }
}
