/* tensor.cuh - the glue between ops: residual add, strided 2-D copy and
 * zeroing. CPU twins: cpu_add, cpu_copy2d and cpu_zero in
 * src/backend/backend_cpu.c. */
#ifndef BITLAB_KERNELS_TENSOR_CUH
#define BITLAB_KERNELS_TENSOR_CUH

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] += x[i] */
void bl_cuda_add(float *y, const float *x, size_t n);
/* dst[r, 0..cols) = src[r, 0..cols) with leading dimensions ld_dst, ld_src */
void bl_cuda_copy2d(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols);
/* bytes zero bytes at x (queued) */
void bl_cuda_zero(void *x, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
