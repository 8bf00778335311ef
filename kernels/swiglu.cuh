/* swiglu.cuh - y = silu(gate)·up with row stride ld (Phi-3's fused
 * gate_up uses ld = 2H), and its backward. CPU twins: bl_swiglu,
 * bl_swiglu_backward (ops/ops.h). fp32 elementwise. */
#ifndef BITLAB_KERNELS_SWIGLU_CUH
#define BITLAB_KERNELS_SWIGLU_CUH

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void bl_cuda_swiglu(float *y, const float *gate, const float *up, int M, int H, int ld);
void bl_cuda_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate,
                             const float *up, int M, int H, int ld);

#ifdef __cplusplus
}
#endif

#endif
