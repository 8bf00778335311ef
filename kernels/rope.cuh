/* rope.cuh - rotary embedding in place, forward and backward (the inverse
 * rotation). CPU twins: bl_rope, bl_rope_backward (ops/ops.h), both pair
 * layouts (interleaved = ggml "normal", else HF/neox halves). Angles are
 * formed and rotated through sin/cos in double, as on the CPU. */
#ifndef BITLAB_KERNELS_ROPE_CUH
#define BITLAB_KERNELS_ROPE_CUH

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void bl_cuda_rope(float *x, const int *pos, int M, int n_heads, int head_dim, float theta,
                  bool interleaved);
void bl_cuda_rope_backward(float *dx, const int *pos, int M, int n_heads, int head_dim,
                           float theta, bool interleaved);

#ifdef __cplusplus
}
#endif

#endif
