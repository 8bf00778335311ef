// swiglu.cu - SwiGLU forward and backward, one thread per element (see swiglu.cuh).
#include "common.cuh"

__global__ void swiglu_kernel(float *y, const float *gate, const float *up, int M, int H, int ld) {
    size_t n = (size_t)M * H;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < n;
         t += (size_t)gridDim.x * blockDim.x) {
        size_t m = t / H, j = t % H, o = m * ld + j;
        float g = gate[o];
        y[t] = g / (1.0f + bl_exp(-g)) * up[o];
    }
}

// silu'(g) = σ(g)·(1 + g·(1 − σ(g)))
__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dy,
                                       const float *gate, const float *up, int M, int H, int ld) {
    size_t n = (size_t)M * H;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < n;
         t += (size_t)gridDim.x * blockDim.x) {
        size_t m = t / H, j = t % H, o = m * ld + j;
        float g = gate[o], d = dy[t], sg = 1.0f / (1.0f + bl_exp(-g));
        if (dgate) dgate[o] = d * up[o] * sg * (1.0f + g * (1.0f - sg));
        if (dup) dup[o] = d * g * sg;
    }
}

extern "C" void bl_cuda_swiglu(float *y, const float *gate, const float *up, int M, int H, int ld) {
    size_t n = (size_t)M * H;
    if (n == 0 || M < 0 || H < 0) return;
    BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), swiglu_kernel)(y, gate, up, M, H, ld);
    BL_LAUNCHED("swiglu");
}

extern "C" void bl_cuda_swiglu_backward(float *dgate, float *dup, const float *dy,
                                        const float *gate, const float *up, int M, int H, int ld) {
    size_t n = (size_t)M * H;
    if (n == 0 || M < 0 || H < 0 || (!dgate && !dup)) return;
    BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), swiglu_backward_kernel)(dgate, dup, dy, gate,
                                                                             up, M, H, ld);
    BL_LAUNCHED("swiglu_backward");
}
