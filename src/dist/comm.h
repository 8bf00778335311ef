/* comm.h - the processes of a data-parallel run (`mpirun -np N bitlab
 * SCRIPT.lua`): who this process is, and the few collectives a training
 * step needs. One communicator for the whole process (MPI's world), so the
 * API is a set of functions, not an object.
 *
 * Built with MPI (CMake BITLAB_MPI, on when find_package(MPI) finds it) and
 * launched by mpirun (the launcher's environment, bl_comm_launcher_size),
 * bl_comm_init joins the job; otherwise every call is the single-process
 * case: rank 0 of 1, reductions and broadcasts leave their data as is.
 *
 * Determinism: bl_comm_sum_floats / bl_comm_sum_doubles are fixed-order
 * reductions on the host. Rank 0 adds the ranks' arrays in rank order,
 * ((x0 + x1) + x2) + …, element by element, and broadcasts the sum, so
 * every rank holds the same bits, and they are the bits one process gets
 * accumulating the same arrays in the same order (the trainer's micro-batch
 * accumulator, trainer.h). MPI_Allreduce promises neither.
 *
 * Failure: a collective whose peer is gone returns an error (MPI's errors
 * return, they do not abort); ending the job is the host's decision
 * (bl_comm_abort, called only from the command line's error path). Library
 * code never exits. */
#ifndef BITLAB_COMM_H
#define BITLAB_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* Joins the job when built with MPI and launched by mpirun (else nothing:
 * one process). Idempotent. */
int bl_comm_init(int *argc, char ***argv, BlError *err);
/* Leaves it (MPI_Finalize) after a successful run, leaving the device
 * collective (device_comm.h) first; a no-op otherwise. */
void bl_comm_finalize(void);

int bl_comm_rank(void);       /* 0-based */
int bl_comm_size(void);       /* 1 without a job */
/* This process's rank among those on its node (MPI_COMM_TYPE_SHARED), 0
 * without a job: a multi-GPU run takes device local_rank (cli/args.c). */
int bl_comm_local_rank(void);
bool bl_comm_built_with_mpi(void);

/* The number of processes the launcher started (OMPI_COMM_WORLD_SIZE,
 * PMI_SIZE or PMIX_SIZE in the environment), 0 when none says: how a build
 * without MPI tells that it was started by mpirun. *var names the
 * variable read (may be NULL). */
int bl_comm_launcher_size(const char **var);

/* x[n] ← Σ over ranks in rank order (see above), on every rank. */
int bl_comm_sum_floats(float *x, size_t n, BlError *err);
int bl_comm_sum_doubles(double *x, size_t n, BlError *err);

/* buf[n] ← rank 0's buf[n] on every rank. */
int bl_comm_bcast(void *buf, size_t n, BlError *err);
/* *s (a NUL-terminated string on rank 0, malloc'ed) ← rank 0's on every
 * rank: the others' *s is replaced by a malloc'ed copy (free the old one
 * first: *s is overwritten). NULL on rank 0 arrives as NULL. */
int bl_comm_bcast_string(char **s, BlError *err);

/* Ends the whole job (MPI_Abort with code) after the message was printed;
 * without a job, returns (the caller exits as usual). */
void bl_comm_abort(int code);

#endif
