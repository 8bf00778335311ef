/* embed.cuh - token embedding lookup and its scatter-add backward. CPU
 * twins: bl_embed, bl_embed_backward (ops/ops.h). The table may be a bf16
 * weight handle (context.cuh); rows come out as fp32. The backward adds with
 * atomics, so the order of additions for a repeated token is not fixed. */
#ifndef BITLAB_KERNELS_EMBED_CUH
#define BITLAB_KERNELS_EMBED_CUH

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void bl_cuda_embed(float *y, const float *table, const int *ids, int M, int D);
void bl_cuda_embed_backward(float *dtable, const float *dy, const int *ids, int M, int D);

#ifdef __cplusplus
}
#endif

#endif
