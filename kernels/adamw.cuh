/* adamw.cuh - one AdamW update of an fp32 tensor and its fp32 moments, and
 * the check whether that update would stay finite. CPU twins:
 * bl_adamw_step and bl_adamw_check (ops/adamw.h): the bias corrections are
 * formed on the host in double exactly as there, and both kernels run one
 * element function (adamw.cu adamw_elem) with round-to-nearest intrinsics
 * so no multiply-add is fused: the update is meant to be bit-identical to
 * the CPU's, and the check's answer the CPU twin's. */
#ifndef BITLAB_KERNELS_ADAMW_CUH
#define BITLAB_KERNELS_ADAMW_CUH

#include <stdbool.h>
#include <stddef.h>


#ifdef __cplusplus
extern "C" {
#endif

/* C headers of src/: C linkage inside C++ */
#include "ops/adamw.h"

/* t is the step number of this update (the CPU's s->t after its increment, ≥ 1) */
void bl_cuda_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long t,
                        const BlAdamWConfig *c);
/* whether bl_cuda_adamw_step with these arguments would leave every updated
 * p, m and v finite; writes nothing. One launch reduces to one device flag,
 * read back (the call waits). True for n = 0; false on a device failure
 * (recorded for bl_cuda_sync). */
bool bl_cuda_adamw_check(const float *p, const float *g, const float *m, const float *v, size_t n,
                         long t, const BlAdamWConfig *c);

#ifdef __cplusplus
}
#endif

#endif
