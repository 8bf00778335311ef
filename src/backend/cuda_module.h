/* cuda_module.h - the contract between libbitlab and libbitlab_cuda.so.
 *
 * The CUDA backend (kernels/ and backend_cuda.c) is a shared module that
 * libbitlab opens with dlopen on first use (backend_cuda_loader.c), so that
 * a process that never asks for CUDA never maps cudart, cuBLAS and cuBLASLt
 * (about 215 MB of resident memory). The module exports one symbol,
 * BL_CUDA_MODULE_ENTRY, a function returning the table below; everything
 * else in it is hidden. It carries its own copy of core/error.c (stateless),
 * so it needs nothing from the process that loads it.
 *
 * The loader refuses a module whose abi, version or backend_size differ from
 * its own: the table and BlBackend are plain structs, and a module from
 * another build would read them at the wrong offsets. */
#ifndef BITLAB_CUDA_MODULE_H
#define BITLAB_CUDA_MODULE_H

#include <stddef.h>

#include "backend/backend.h"
#include "core/error.h"

/* the module's file name and the one symbol it exports */
#define BL_CUDA_MODULE_FILE "libbitlab_cuda.so"
#define BL_CUDA_MODULE_ENTRY "bl_cuda_module_entry"
/* bump when BlCudaModule changes */
#define BL_CUDA_MODULE_ABI 2

typedef struct {
    int abi;              /* BL_CUDA_MODULE_ABI of the module's build */
    const char *version;  /* BITLAB_VERSION of the module's build */
    size_t backend_size;  /* sizeof(BlBackend) in the module's build */

    /* devices visible to the process: 0 (returning 0) when there is none or
     * no usable driver; -1 with err set for any other failure */
    int (*device_count)(int *n, BlError *err);
    /* initialises device `device` (idempotent for the same one) and returns
     * the backend, or NULL with err set ("no CUDA device", no such device, a
     * too old GPU, ...). The process holds one device: asking for another
     * after the first is an error naming both. */
    const BlBackend *(*backend)(int device, BlError *err);
    /* the ternary GEMM's engine: 0 = cuBLASLt int8, 1 = always the own
     * __dp4a kernel (test_backend_ops compares the two) */
    void (*set_int8_engine)(int engine);

    /* ---- NCCL, for data-parallel runs on several GPUs (kernels/nccl.cuh).
     * The library is dlopened on first use ($BITLAB_NCCL_LIBRARY, else
     * libnccl.so.2), so a single-GPU process needs no NCCL installed; each
     * entry fails with err set when it cannot load ("data-parallel on CUDA
     * needs NCCL: cannot load ...") or when the module was built without
     * nccl.h ("built without NCCL").
     *
     * Loads the library and resolves every function the module calls;
     * touches no device. */
    int (*nccl_load)(BlError *err);
    /* ncclGetUniqueId: the id one rank makes and every rank passes to nccl_init */
    int (*nccl_unique_id)(unsigned char id[BL_NCCL_ID_BYTES], BlError *err);
    /* ncclCommInitRank on the backend's device (backend() first); creates
     * the communicator's own stream; once per process */
    int (*nccl_init)(const unsigned char id[BL_NCCL_ID_BYTES], int rank, int size, BlError *err);
    /* x[n] (device memory) <- the sum over the ranks, in place: an
     * ncclAllReduce on the NCCL stream, ordered after the work queued on the
     * compute stream and before the work queued after it, by events (no host
     * synchronisation). NCCL's ring sum is not in rank order: the ranks hold
     * the same bits, but not those of one process, only equal up to rounding. */
    int (*nccl_sum)(float *x, size_t n, BlError *err);
    /* ncclCommDestroy and the stream; a no-op without nccl_init */
    void (*nccl_free)(void);
} BlCudaModule;

typedef const BlCudaModule *(*BlCudaModuleEntry)(void);

/* The loaded module's table (loading it on first use), or NULL with err
 * set as bl_backend_cuda_status says. Does not touch the device. */
const BlCudaModule *bl_cuda_module(BlError *err);

#endif
