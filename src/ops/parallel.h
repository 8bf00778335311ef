/* parallel.h - bitlab's worker threads: one small pool that runs both the
 * matrix products (OpenBLAS is kept single-threaded and called once per fixed
 * block, see ops/gemm.h) and the per-row work between them, so no thread
 * spins waiting for the next GEMM and both cores work outside GEMM too.
 *
 * Results never depend on the thread count: bl_parallel_for hands each thread
 * a contiguous range of [0, n), and every caller makes index i's result a
 * function of i alone (a row, a fixed block of a product, a fixed chunk of a
 * reduction whose partial sums are then added in index order). The thread
 * count only decides who computes what, so a run resumes bit for bit under
 * any OPENBLAS_NUM_THREADS. */
#ifndef BITLAB_PARALLEL_H
#define BITLAB_PARALLEL_H

/* Runs fn(ctx, i0, i1) over contiguous ranges covering [0, n), on up to
 * bl_parallel_threads() threads (the caller's included), and returns when all
 * are done. `work` is the whole job's size in elements touched, roughly:
 * below BL_PARALLEL_MIN_WORK waking a thread costs more than it saves and the
 * caller runs it alone. Called from inside a range (nested), or while another
 * thread holds the pool, it also runs the whole range on the calling thread. */
typedef void (*BlRangeFn)(void *ctx, long i0, long i1);
enum { BL_PARALLEL_MIN_WORK = 1 << 15 };
void bl_parallel_for(long n, long work, BlRangeFn fn, void *ctx);

/* The pool's size, fixed at first use: OPENBLAS_NUM_THREADS, else
 * OMP_NUM_THREADS, else the CPUs this process may run on (at most 64). */
int bl_parallel_threads(void);

#endif
