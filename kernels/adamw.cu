// adamw.cu - the AdamW update, elementwise, and its finiteness check (see adamw.cuh).
#include <math.h>

#include "common.cuh"

// The step's constants, formed on the host in double exactly as
// ops/adamw.c adamw_consts does.
struct AdamWConsts {
    float b1, b2, eps, step, rbc2, decay;
};

static AdamWConsts adamw_consts(const BlAdamWConfig *c, long t) {
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    return AdamWConsts{c->beta1, c->beta2, c->eps, (float)(c->lr / bc1), (float)(1.0 / sqrt(bc2)),
                       1.0f - c->lr * c->weight_decay};
}

// One element's update, in place on (p, m, v): the one place the kernels
// write AdamW's arithmetic (the step and its check), the CPU's adamw_elem
// operation for operation, each rounded (no fused multiply-add).
__device__ __forceinline__ void adamw_elem(float &p, float g, float &m, float &v,
                                           const AdamWConsts &k) {
    float c1 = __fsub_rn(1.0f, k.b1), c2 = __fsub_rn(1.0f, k.b2);
    // m = β1·m + (1−β1)·g ; v = β2·v + (1−β2)·g·g, each product rounded as on the CPU
    m = __fadd_rn(__fmul_rn(k.b1, m), __fmul_rn(c1, g));
    v = __fadd_rn(__fmul_rn(k.b2, v), __fmul_rn(__fmul_rn(c2, g), g));
    float den = __fadd_rn(__fmul_rn(__fsqrt_rn(v), k.rbc2), k.eps);
    p = __fsub_rn(__fmul_rn(p, k.decay), __fdiv_rn(__fmul_rn(k.step, m), den));
}

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                             AdamWConsts k) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        adamw_elem(p[i], g[i], m[i], v[i], k);
    }
}

// *flag |= 1 when any element's update is NaN/±Inf in p, m or v: per
// thread over its grid-stride elements, per warp by a max reduction, one
// atomicOr per warp that saw one (blockDim.x a multiple of 32)
__global__ void adamw_check_kernel(unsigned *flag, const float *p, const float *g, const float *m,
                                   const float *v, size_t n, AdamWConsts k) {
    unsigned bad = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_elem(pi, g[i], mi, vi, k);
        bad |= !(isfinite(pi) && isfinite(mi) && isfinite(vi));
    }
    bad = __reduce_max_sync(0xffffffffu, bad);
    if ((threadIdx.x & 31) == 0 && bad) atomicOr(flag, 1u);
}

static bool read_back(void *host, const void *dev, size_t bytes) {
    cudaStream_t st = bl_cuda_stream_();
    return !BL_CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, st)) &&
           !BL_CUDA_CHECK(cudaStreamSynchronize(st));
}

extern "C" void bl_cuda_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long t,
                                   const BlAdamWConfig *c) {
    if (n == 0) return;
    BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), adamw_kernel)(p, g, m, v, n,
                                                                          adamw_consts(c, t));
    BL_LAUNCHED("adamw");
}

extern "C" bool bl_cuda_adamw_check(const float *p, const float *g, const float *m, const float *v,
                                    size_t n, long t, const BlAdamWConfig *c) {
    if (n == 0) return true;
    unsigned *flag = (unsigned *)bl_cuda_scratch_(BL_WS_RED, sizeof(unsigned));
    if (!flag) return false;
    cudaStream_t st = bl_cuda_stream_();
    if (BL_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(unsigned), st))) return false;
    BL_LAUNCH(bl_blocks(n, 256), 256, 0, st, adamw_check_kernel)(flag, p, g, m, v, n,
                                                                 adamw_consts(c, t));
    unsigned h = 1;
    if (BL_LAUNCHED("adamw_check") || !read_back(&h, flag, sizeof h)) return false;
    return h == 0;
}
