/* nccl.cuh - NCCL for data-parallel runs on several GPUs: the gradient
 * all-reduce between the processes' devices (C-callable; implementation in
 * nccl.cu, entries of the module table in src/backend/cuda_module.h).
 *
 * The library is dlopened on first use, $BITLAB_NCCL_LIBRARY if set, else
 * libnccl.so.2, so that the CUDA backend runs for a single-GPU user with no
 * NCCL installed: only a run on N > 1 GPUs needs it. A module built where
 * CMake found no nccl.h has these entries too; they fail with "built
 * without NCCL". Every failure names what to do. */
#ifndef BITLAB_KERNELS_NCCL_CUH
#define BITLAB_KERNELS_NCCL_CUH

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/error.h"

/* NCCL_UNIQUE_ID_BYTES (nccl.cu checks it against nccl.h) */
#define BL_CUDA_NCCL_ID_BYTES 128

/* Loads the library and resolves every function this file calls (once per
 * process; a failure is kept and repeated); touches no device. */
int bl_cuda_nccl_load(BlError *err);
/* ncclGetUniqueId into id (one rank makes it, every rank passes it to init) */
int bl_cuda_nccl_unique_id(unsigned char id[BL_CUDA_NCCL_ID_BYTES], BlError *err);
/* ncclCommInitRank(size, id, rank) on the backend's device (bl_cuda_init
 * first), plus the communicator's own stream and two events; once per
 * process. Blocks until every rank has joined. */
int bl_cuda_nccl_init(const unsigned char id[BL_CUDA_NCCL_ID_BYTES], int rank, int size,
                      BlError *err);
/* x[n] (device memory) <- the sum over the ranks, in place (ncclAllReduce,
 * ncclFloat, ncclSum) on the NCCL stream: an event on the compute stream
 * that the NCCL stream waits on, the all-reduce, an event on the NCCL
 * stream that the compute stream waits on, so the ops queued after it read
 * the sum without a host synchronisation. NCCL's ring sum is not in rank
 * order: every rank gets the same bits, equal to one process's sum only up
 * to rounding. */
int bl_cuda_nccl_sum(float *x, size_t n, BlError *err);
/* ncclCommDestroy, the stream and events; a no-op without init */
void bl_cuda_nccl_free(void);

#ifdef __cplusplus
}
#endif

#endif
