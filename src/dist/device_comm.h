/* device_comm.h - the gradient sum between the processes' devices (NCCL on
 * GPUs) for a data-parallel run, bootstrapped over the host communicator
 * (comm.h) as llm.c does: rank 0 makes the collective's unique id, MPI
 * broadcasts it, every rank joins with its rank and the world size. Then a
 * step's gradient arena is summed in place in device memory, with no copy
 * through the host.
 *
 * The device library is given as a table of functions (the CUDA module's
 * NCCL entries, backend.h, filled in by the script layer), so that this
 * layer knows MPI and nothing of backends. One device communicator per
 * process, like comm.h's one host communicator; bl_comm_finalize frees it
 * before leaving MPI.
 *
 * Determinism: the sum is the device library's. Real NCCL's ring sum is not
 * in rank order: every rank holds the same bits, but N ranks equal one
 * process's step only up to rounding (the host path, comm.h, is bit-exact).
 * The emulated NCCL of tests/cuda_emu sums in rank order, so there the
 * equality is bit for bit. */
#ifndef BITLAB_DEVICE_COMM_H
#define BITLAB_DEVICE_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

#define BL_DEVICE_COMM_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES */

typedef struct {
    const char *name; /* "NCCL": messages say which */
    int (*unique_id)(unsigned char id[BL_DEVICE_COMM_ID_BYTES], BlError *err);
    int (*init)(const unsigned char id[BL_DEVICE_COMM_ID_BYTES], int rank, int size, BlError *err);
    /* x[n] in device memory <- the sum over the ranks, in place */
    int (*sum)(float *x, size_t n, BlError *err);
    void (*free)(void);
} BlDeviceCollective;

/* Joins every rank to the device collective (all ranks call it at the same
 * point: it broadcasts over comm.h). Rank 0's failure to make the id reaches
 * every rank, so all fail with its message; a failure of one rank's init
 * fails that rank (the host ends the job: comm.h). Idempotent once joined;
 * a different table after that is an error. One process: nothing to join. */
int bl_device_comm_init(const BlDeviceCollective *dc, BlError *err);
/* whether bl_device_comm_init joined this process */
bool bl_device_comm_ready(void);
/* x[n] (device memory) <- Σ over the ranks, through the joined collective */
int bl_device_comm_sum(float *x, size_t n, BlError *err);
/* Leaves the collective (called by bl_comm_finalize); a no-op when not joined. */
void bl_device_comm_free(void);

#endif
