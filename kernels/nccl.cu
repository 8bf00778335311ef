// nccl.cu - NCCL loaded at first use (see nccl.cuh): dlopen of
// $BITLAB_NCCL_LIBRARY or libnccl.so.2, the functions resolved with dlsym
// into pointers typed from the real nccl.h (decltype(&ncclAllReduce), ...),
// so the compiler checks every call against NCCL's own signatures although
// the module does not link the library.
//
// Why not link it: a single-GPU user of the CUDA backend need not have NCCL
// installed (it is a separate download from the toolkit on many systems);
// only a data-parallel run on several GPUs does, and it is told so clearly.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "nccl.cuh"

#ifdef BITLAB_HAVE_NCCL
#include <nccl.h>

static_assert(sizeof(ncclUniqueId) == BL_CUDA_NCCL_ID_BYTES, "NCCL_UNIQUE_ID_BYTES changed");

// ----------------------------------------------------------------------------
// the library

namespace {

struct Nccl {
    bool tried;     // the load was attempted (its outcome is kept)
    char why[640];  // the load's failure, "" when loaded
    void *lib;
    decltype(&ncclGetUniqueId) get_unique_id;
    decltype(&ncclCommInitRank) comm_init_rank;
    decltype(&ncclAllReduce) all_reduce;
    decltype(&ncclCommDestroy) comm_destroy;
    decltype(&ncclCommAbort) comm_abort;  // optional (free after a failure): else ncclCommDestroy
    decltype(&ncclGetErrorString) error_string;
    decltype(&ncclCommGetAsyncError) async_error;
    // the communicator (after init)
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t computed, reduced;  // on the compute stream / on the NCCL stream
    int rank, size;
    bool failed;  // a collective failed: free aborts (Destroy may wait for a peer that is gone)
};

Nccl nccl;

const char *library_name(void) {
    const char *env = getenv("BITLAB_NCCL_LIBRARY");
    return env && env[0] ? env : "libnccl.so.2";
}

// f <- the library's symbol name; false when it has none
template <class F>
bool resolve(F &f, const char *name) {
    // POSIX guarantees dlsym's void * converts to a function pointer
    f = reinterpret_cast<F>(dlsym(nccl.lib, name));
    return f != nullptr;
}

void load(void) {
    nccl.tried = true;
    const char *name = library_name();
    // RTLD_LOCAL: NCCL's own (static) CUDA runtime stays out of the process's namespace
    nccl.lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!nccl.lib) {
        const char *e = dlerror();
        snprintf(nccl.why, sizeof nccl.why,
                 "data-parallel on CUDA needs NCCL: cannot load %s: %s; set BITLAB_NCCL_LIBRARY "
                 "to the library's path", name, e ? e : "dlopen failed");
        return;
    }
    struct {
        bool ok;
        const char *name;
    } need[] = {
        {resolve(nccl.get_unique_id, "ncclGetUniqueId"), "ncclGetUniqueId"},
        {resolve(nccl.comm_init_rank, "ncclCommInitRank"), "ncclCommInitRank"},
        {resolve(nccl.all_reduce, "ncclAllReduce"), "ncclAllReduce"},
        {resolve(nccl.comm_destroy, "ncclCommDestroy"), "ncclCommDestroy"},
        {resolve(nccl.error_string, "ncclGetErrorString"), "ncclGetErrorString"},
        {resolve(nccl.async_error, "ncclCommGetAsyncError"), "ncclCommGetAsyncError"},
    };
    resolve(nccl.comm_abort, "ncclCommAbort");
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (need[i].ok) continue;
        snprintf(nccl.why, sizeof nccl.why,
                 "data-parallel on CUDA needs NCCL: %s has no %s (NCCL 2.x expected); set "
                 "BITLAB_NCCL_LIBRARY to another library", name, need[i].name);
        dlclose(nccl.lib);
        nccl.lib = NULL;
        return;
    }
    nccl.why[0] = '\0';
}

int fail_nccl(BlError *err, const char *what, ncclResult_t r) {
    return bl_fail(err, "nccl: %s (rank %d of %d): %s", what, nccl.rank, nccl.size,
                   nccl.error_string(r));
}

int fail_cuda(BlError *err, const char *what, cudaError_t e) {
    return bl_fail(err, "nccl: %s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

void destroy_stream(void) {
    if (nccl.computed) cudaEventDestroy(nccl.computed);
    if (nccl.reduced) cudaEventDestroy(nccl.reduced);
    if (nccl.stream) cudaStreamDestroy(nccl.stream);
    nccl.computed = nccl.reduced = NULL;
    nccl.stream = NULL;
}

}  // namespace

int bl_cuda_nccl_load(BlError *err) {
    if (!nccl.tried) load();
    return nccl.why[0] ? bl_fail(err, "%s", nccl.why) : 0;
}

int bl_cuda_nccl_unique_id(unsigned char id[BL_CUDA_NCCL_ID_BYTES], BlError *err) {
    if (bl_cuda_nccl_load(err)) return -1;
    ncclUniqueId uid;
    ncclResult_t r = nccl.get_unique_id(&uid);
    if (r != ncclSuccess) return fail_nccl(err, "ncclGetUniqueId", r);
    memcpy(id, uid.internal, sizeof uid.internal);
    return 0;
}

int bl_cuda_nccl_init(const unsigned char id[BL_CUDA_NCCL_ID_BYTES], int rank, int size,
                      BlError *err) {
    if (nccl.comm)
        return bl_fail(err, "nccl: this process is already rank %d of %d of a communicator",
                       nccl.rank, nccl.size);
    if (bl_cuda_device() < 0)
        return bl_fail(err, "nccl: the CUDA backend has no device yet (open it before NCCL)");
    if (rank < 0 || rank >= size) return bl_fail(err, "nccl: rank %d of %d", rank, size);
    if (bl_cuda_nccl_load(err)) return -1;
    nccl.rank = rank;
    nccl.size = size;
    // the all-reduce's own stream: the compute stream keeps queueing while it runs
    cudaError_t e = cudaStreamCreateWithFlags(&nccl.stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&nccl.computed, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&nccl.reduced, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        destroy_stream();
        return fail_cuda(err, "creating the NCCL stream", e);
    }
    ncclUniqueId uid;
    memcpy(uid.internal, id, sizeof uid.internal);
    ncclResult_t r = nccl.comm_init_rank(&nccl.comm, size, uid, rank);
    if (r != ncclSuccess) {
        nccl.comm = NULL;
        destroy_stream();
        char what[96];
        snprintf(what, sizeof what, "ncclCommInitRank on CUDA device %d", bl_cuda_device());
        return fail_nccl(err, what, r);
    }
    return 0;
}

int bl_cuda_nccl_sum(float *x, size_t n, BlError *err) {
    if (!nccl.comm) return bl_fail(err, "nccl: a sum before the communicator (bl_cuda_nccl_init)");
    if (n == 0) return 0;
    cudaStream_t compute = bl_cuda_stream_();
    // the NCCL stream starts once the compute stream has formed x
    cudaError_t e = cudaEventRecord(nccl.computed, compute);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(nccl.stream, nccl.computed, 0);
    if (e != cudaSuccess) return fail_cuda(err, "ordering the all-reduce after the step", e);
    ncclResult_t r = nccl.all_reduce(x, x, n, ncclFloat, ncclSum, nccl.comm, nccl.stream);
    if (r != ncclSuccess) {
        nccl.failed = true;
        return fail_nccl(err, "ncclAllReduce", r);
    }
    // what the compute stream queues next reads the sum
    e = cudaEventRecord(nccl.reduced, nccl.stream);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(compute, nccl.reduced, 0);
    if (e != cudaSuccess) return fail_cuda(err, "ordering the step after the all-reduce", e);
    // a peer's failure (a network error, a rank gone) shows here, not in the call's result
    ncclResult_t async = ncclSuccess;
    r = nccl.async_error(nccl.comm, &async);
    if (r == ncclSuccess && async != ncclSuccess && async != ncclInProgress) r = async;
    if (r == ncclSuccess) return 0;
    nccl.failed = true;
    return fail_nccl(err, "ncclAllReduce (asynchronous error)", r);
}

void bl_cuda_nccl_free(void) {
    if (!nccl.comm) return;
    if (nccl.failed && nccl.comm_abort) {
        nccl.comm_abort(nccl.comm);
    } else {
        cudaStreamSynchronize(nccl.stream);
        nccl.comm_destroy(nccl.comm);
    }
    nccl.comm = NULL;
    nccl.failed = false;
    destroy_stream();
}

#else

// ----------------------------------------------------------------------------
// a module built without nccl.h: the entries say so

static int without_nccl(BlError *err) {
    return bl_fail(err, "data-parallel on CUDA needs NCCL, and this CUDA module was built without "
                        "NCCL (no nccl.h at configure time: install NCCL's headers and rebuild)");
}

int bl_cuda_nccl_load(BlError *err) { return without_nccl(err); }
int bl_cuda_nccl_unique_id(unsigned char id[BL_CUDA_NCCL_ID_BYTES], BlError *err) {
    (void)id;
    return without_nccl(err);
}
int bl_cuda_nccl_init(const unsigned char id[BL_CUDA_NCCL_ID_BYTES], int rank, int size,
                      BlError *err) {
    (void)id, (void)rank, (void)size;
    return without_nccl(err);
}
int bl_cuda_nccl_sum(float *x, size_t n, BlError *err) {
    (void)x, (void)n;
    return without_nccl(err);
}
void bl_cuda_nccl_free(void) {}

#endif
