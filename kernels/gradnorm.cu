// gradnorm.cu - sums of squares and scaling (see gradnorm.cuh).
#include "common.cuh"

enum { SUMSQ_BLOCKS = 1024 };

__global__ void sumsq_partial_kernel(double *partial, const float *x, size_t n) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        acc += (double)x[i] * x[i];
    acc = bl_block_sum_d(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sumsq_final_kernel(double *total, const double *partial, int n) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = bl_block_sum_d(acc, sh);
    if (threadIdx.x == 0) *total = acc;
}

// one block per segment [off[b], off[b+1]): the per-tensor shares of the
// gradient norm in one launch
__global__ void sumsq_segments_kernel(double *out, const float *x, const size_t *off) {
    __shared__ double sh[32];
    size_t a = off[blockIdx.x], b = off[blockIdx.x + 1];
    double acc = 0.0;
    for (size_t i = a + threadIdx.x; i < b; i += blockDim.x) acc += (double)x[i] * x[i];
    acc = bl_block_sum_d(acc, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

__global__ void scale_kernel(float *x, size_t n, float f) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= f;
}

static bool read_back(void *host, const void *dev, size_t bytes) {
    cudaStream_t st = bl_cuda_stream_();
    return !BL_CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, st)) &&
           !BL_CUDA_CHECK(cudaStreamSynchronize(st));
}

extern "C" double bl_cuda_sumsq(const float *x, size_t n) {
    if (n == 0) return 0.0;
    double *partial = (double *)bl_cuda_scratch_(BL_WS_RED, sizeof(double) * (SUMSQ_BLOCKS + 1));
    if (!partial) return NAN;
    unsigned blocks = bl_blocks(n, 256);
    if (blocks > SUMSQ_BLOCKS) blocks = SUMSQ_BLOCKS;
    cudaStream_t st = bl_cuda_stream_();
    BL_LAUNCH(blocks, 256, 0, st, sumsq_partial_kernel)(partial, x, n);
    if (BL_LAUNCHED("sumsq_partial")) return NAN;
    BL_LAUNCH(1, 256, 0, st, sumsq_final_kernel)(partial + SUMSQ_BLOCKS, partial, (int)blocks);
    double v = NAN;
    if (BL_LAUNCHED("sumsq_final") || !read_back(&v, partial + SUMSQ_BLOCKS, sizeof v)) return NAN;
    return v;
}

extern "C" void bl_cuda_sumsq_segments(double *out, const float *x, const size_t *off, int n) {
    for (int i = 0; i < n; i++) out[i] = NAN;
    if (n <= 0) return;
    // scratch: the n + 1 offsets, then the n sums (size_t and double are both 8 bytes)
    size_t bytes = sizeof(size_t) * ((size_t)n + 1) + sizeof(double) * (size_t)n;
    char *ws = (char *)bl_cuda_scratch_(BL_WS_RED, bytes);
    if (!ws) return;
    size_t *doff = (size_t *)ws;
    double *dout = (double *)(ws + sizeof(size_t) * ((size_t)n + 1));
    cudaStream_t st = bl_cuda_stream_();
    if (BL_CUDA_CHECK(cudaMemcpyAsync(doff, off, sizeof(size_t) * ((size_t)n + 1),
                                      cudaMemcpyHostToDevice, st)))
        return;
    BL_LAUNCH(n, 512, 0, st, sumsq_segments_kernel)(dout, x, doff);
    if (BL_LAUNCHED("sumsq_segments")) return;
    if (!read_back(out, dout, sizeof(double) * (size_t)n))
        for (int i = 0; i < n; i++) out[i] = NAN;
}

extern "C" void bl_cuda_scale(float *x, size_t n, float f) {
    if (n == 0) return;
    BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), scale_kernel)(x, n, f);
    BL_LAUNCHED("scale");
}
