// adamw.cu - the AdamW update, elementwise (see adamw.cuh).
#include <math.h>

#include "common.cuh"

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float b1,
                             float b2, float eps, float step, float rbc2, float decay) {
    float c1 = __fsub_rn(1.0f, b1), c2 = __fsub_rn(1.0f, b2);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        // m = β1·m + (1−β1)·g ; v = β2·v + (1−β2)·g·g, each product rounded as on the CPU
        float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(c1, gi));
        float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(c2, gi), gi));
        m[i] = mi;
        v[i] = vi;
        float den = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), rbc2), eps);
        p[i] = __fsub_rn(__fmul_rn(p[i], decay), __fdiv_rn(__fmul_rn(step, mi), den));
    }
}

extern "C" void bl_cuda_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long t,
                                   const BlAdamWConfig *c) {
    if (n == 0) return;
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    float step = (float)(c->lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2));
    float decay = 1.0f - c->lr * c->weight_decay;
    BL_LAUNCH(bl_blocks(n, 256), 256, 0, bl_cuda_stream_(), adamw_kernel)(p, g, m, v, n, c->beta1,
                                                                   c->beta2, c->eps, step, rbc2,
                                                                   decay);
    BL_LAUNCHED("adamw");
}
