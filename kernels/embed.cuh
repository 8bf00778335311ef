/* embed.cuh - token embedding lookup. CPU twin: bl_embed (ops/ops.h). The
 * table may be a bf16 weight handle (context.cuh); rows come out as fp32. */
#ifndef BITLAB_KERNELS_EMBED_CUH
#define BITLAB_KERNELS_EMBED_CUH

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void bl_cuda_embed(float *y, const float *table, const int *ids, int M, int D);

#ifdef __cplusplus
}
#endif

#endif
