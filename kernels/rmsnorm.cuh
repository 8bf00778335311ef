/* rmsnorm.cuh - RMSNorm forward and backward. CPU twins: bl_rmsnorm,
 * bl_rmsnorm_backward (ops/ops.h), incl. dx aliasing dy. fp32 in and out, the
 * sum of squares reduced in fp32 per row, 1/rms formed in double. */
#ifndef BITLAB_KERNELS_RMSNORM_CUH
#define BITLAB_KERNELS_RMSNORM_CUH

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void bl_cuda_rmsnorm(float *y, float *rstd, const float *x, const float *g, int M, int D,
                     float eps);
void bl_cuda_rmsnorm_backward(float *dx, float *dg, const float *dy, const float *x,
                              const float *g, const float *rstd, int M, int D);

#ifdef __cplusplus
}
#endif

#endif
