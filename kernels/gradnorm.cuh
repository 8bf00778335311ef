/* gradnorm.cuh - the gradient clip's pieces on device tensors. CPU twins:
 * the loops of bl_grad_norm and bl_grad_clip (ops/adamw.h), per tensor: the
 * caller sums the squares of every tensor, takes the root, and scales each
 * when clipping. Squares are summed in double (per thread, per block, then
 * across blocks in a fixed order). The sums are read back, so sumsq and
 * sumsq_segments wait for the stream; on a device failure they return NAN
 * (and sync reports it). The non-finite guard is adamw.cuh's
 * bl_cuda_adamw_check. */
#ifndef BITLAB_KERNELS_GRADNORM_CUH
#define BITLAB_KERNELS_GRADNORM_CUH

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Σ x[i]² */
double bl_cuda_sumsq(const float *x, size_t n);
/* out[i] = Σ x[off[i] .. off[i+1])² for i < n (host arrays out and off):
 * one block per tensor, one launch, one read-back */
void bl_cuda_sumsq_segments(double *out, const float *x, const size_t *off, int n);
/* x[i] *= f */
void bl_cuda_scale(float *x, size_t n, float f);

#ifdef __cplusplus
}
#endif

#endif
