// quant_internal.cuh - the pieces of quant.cu that the ternary GEMM reuses
// (C++ only): int8 activations and the int8 ternary weight of the fused kernel.
#ifndef BITLAB_KERNELS_QUANT_INTERNAL_CUH
#define BITLAB_KERNELS_QUANT_INTERNAL_CUH

#include "common.cuh"

// q[M, ldq] = clamp(round(x·s), −Q−1, Q) (columns D..ldq left as they are),
// scale[M] = s = Q / max(absmax, 1e-5); Q = 127 or 7.
int bl_cuda_actq_int8_(int8_t *q, int ldq, float *scale, const float *x, int M, int D, int Q);

// q[out, ldq] = clamp(round((W+ΔW)·s), −1, 1) with *s_dev = s (device float),
// (columns in..ldq left as they are).
int bl_cuda_weff_int8_(int8_t *q, int ldq, float *s_dev, const BlCudaWeff *spec);

#endif
