/* adamw.cuh - one AdamW update of an fp32 tensor and its fp32 moments.
 * CPU twin: bl_adamw_step (ops/adamw.h): the bias corrections are formed
 * on the host in double exactly as there, and the kernel uses
 * round-to-nearest intrinsics so no multiply-add is fused: the update is
 * meant to be bit-identical to the CPU's. */
#ifndef BITLAB_KERNELS_ADAMW_CUH
#define BITLAB_KERNELS_ADAMW_CUH

#include <stddef.h>


#ifdef __cplusplus
extern "C" {
#endif

/* C headers of src/: C linkage inside C++ */
#include "ops/adamw.h"

/* t is the step number of this update (the CPU's s->t after its increment, ≥ 1) */
void bl_cuda_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long t,
                        const BlAdamWConfig *c);

#ifdef __cplusplus
}
#endif

#endif
