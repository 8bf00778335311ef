// emu_nccl.cpp - an emulated NCCL for the emulated CUDA device
// (libbitlab_emu_nccl.so, see README.md): the subset of NCCL's C API that
// kernels/nccl.cu loads (ncclGetUniqueId, ncclCommInitRank, ncclAllReduce,
// ncclCommDestroy, ncclCommAbort, ncclGetErrorString, ncclCommGetAsyncError),
// with the real nccl.h's signatures, on MPI. BITLAB_NCCL_LIBRARY points
// kernels/nccl.cu at it, so a data-parallel run on the emulated device goes
// through the very code a GPU run uses: the bootstrap over MPI, the NCCL
// stream, its events, the in-place all-reduce of the gradient arena.
//
// It runs inside bitlab under mpirun: the host process has already called
// MPI_Init (src/dist/comm.c), so this library never initialises or
// finalises MPI; without it, ncclCommInitRank fails and says so. The
// emulated device's memory is host memory, so the all-reduce sums host
// arrays, in rank order (rank 0 adds rank 1's, then rank 2's, ... and
// broadcasts), exactly as the host path's bl_comm_sum_floats: an emulated
// N-rank run equals the one-process emulated run bit for bit (real NCCL's
// ring sum does not promise that).
//
// BITLAB_EMU_NCCL_LOG=PATH appends one line per call that matters to PATH
// ("init rank R size S", "allreduce rank R count N float sum stream 0x..."),
// so a test can tell that the device path ran and how often.
#include <fcntl.h>
#include <mpi.h>
#include <nccl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <new>
#include <random>

#define EXPORT extern "C" __attribute__((visibility("default")))

struct ncclComm {
    MPI_Comm comm;  // a duplicate of MPI_COMM_WORLD: its messages never meet bitlab's
    int rank, size;
};

namespace {

// the last failure's explanation, returned by ncclGetErrorString with its code
char detail[512];

ncclResult_t fail(ncclResult_t r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return r;
}

void log_line(const char *fmt, ...) {
    const char *path = getenv("BITLAB_EMU_NCCL_LOG");
    if (!path || !path[0]) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    // one write of the whole line with O_APPEND: the ranks' lines never interleave
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    if (n > 0 && write(fd, line, (size_t)n) != n)
        fprintf(stderr, "emu-nccl: cannot write %s\n", path);
    close(fd);
}

bool mpi_ready(void) {
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    return up && !down;
}

// messages of at most this many floats: MPI counts are ints
const size_t kChunk = (size_t)1 << 26;

}  // namespace

EXPORT const char *ncclGetErrorString(ncclResult_t r) {
    static char msg[640];
    const char *name = r == ncclSuccess            ? "no error"
                       : r == ncclUnhandledCudaError ? "unhandled cuda error"
                       : r == ncclSystemError        ? "unhandled system error"
                       : r == ncclInternalError      ? "internal error"
                       : r == ncclInvalidArgument    ? "invalid argument"
                       : r == ncclInvalidUsage       ? "invalid usage"
                       : r == ncclRemoteError
                           ? "remote process exited or there was a network error"
                       : r == ncclInProgress         ? "NCCL operation in progress"
                                                     : "unknown result code";
    if (r == ncclSuccess || !detail[0]) return name;
    snprintf(msg, sizeof msg, "%s (emulated NCCL: %s)", name, detail);
    return msg;
}

EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return fail(ncclInvalidArgument, "ncclGetUniqueId: id is NULL");
    std::random_device rd;
    for (size_t i = 0; i < sizeof id->internal; i++) id->internal[i] = (char)(rd() & 0xff);
    return ncclSuccess;
}

EXPORT ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank) {
    if (!out) return fail(ncclInvalidArgument, "ncclCommInitRank: comm is NULL");
    *out = nullptr;
    if (!mpi_ready())
        return fail(ncclInvalidUsage, "ncclCommInitRank: MPI is not initialised; the emulated "
                    "NCCL runs on the MPI job of the process that loads it (bitlab under mpirun)");
    int wrank = 0, wsize = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &wrank);
    MPI_Comm_size(MPI_COMM_WORLD, &wsize);
    if (rank != wrank || nranks != wsize)
        return fail(ncclInvalidArgument,
                    "ncclCommInitRank: rank %d of %d, but MPI says rank %d of %d", rank, nranks,
                    wrank, wsize);
    ncclComm *c = new (std::nothrow) ncclComm;
    if (!c) return fail(ncclSystemError, "ncclCommInitRank: out of memory");
    c->rank = rank;
    c->size = nranks;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &c->comm) != MPI_SUCCESS) {
        delete c;
        return fail(ncclSystemError, "ncclCommInitRank: MPI_Comm_dup failed");
    }
    // every rank must hold rank 0's id (what real NCCL's bootstrap connects through)
    ncclUniqueId root = id;
    int differs = 0, any = 0;
    int rc = MPI_Bcast(root.internal, (int)sizeof root.internal, MPI_BYTE, 0, c->comm);
    if (rc == MPI_SUCCESS) {
        differs = memcmp(root.internal, id.internal, sizeof id.internal) != 0;
        rc = MPI_Allreduce(&differs, &any, 1, MPI_INT, MPI_MAX, c->comm);
    }
    if (rc != MPI_SUCCESS || any) {
        MPI_Comm_free(&c->comm);
        delete c;
        if (rc != MPI_SUCCESS)
            return fail(ncclSystemError, "ncclCommInitRank: MPI failed (error %d)", rc);
        return fail(ncclInvalidArgument, "ncclCommInitRank: %s unique id differs from rank 0's",
                    differs ? "this rank's" : "another rank's");
    }
    log_line("init rank %d size %d\n", rank, nranks);
    *out = c;
    return ncclSuccess;
}

// The fixed-order sum of comm_size arrays: rank 0 receives rank 1's, 2's,
// ... in turn and adds each into its own, then broadcasts the sum.
EXPORT ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                                  ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                                  cudaStream_t stream) {
    if (!comm) return fail(ncclInvalidArgument, "ncclAllReduce: comm is NULL");
    if (datatype != ncclFloat || op != ncclSum)
        return fail(ncclInvalidArgument, "ncclAllReduce: only ncclFloat with ncclSum is emulated "
                    "(datatype %d, op %d)", (int)datatype, (int)op);
    if (count && (!sendbuff || !recvbuff))
        return fail(ncclInvalidArgument, "ncclAllReduce: a NULL buffer");
    log_line("allreduce rank %d count %zu float sum stream %p\n", comm->rank, count,
             (void *)stream);
    float *x = (float *)recvbuff;
    if (sendbuff != recvbuff) memmove(x, sendbuff, count * sizeof(float));
    float *in = NULL;
    if (comm->rank == 0 && comm->size > 1 && count) {
        in = (float *)malloc(sizeof(float) * (count < kChunk ? count : kChunk));
        if (!in) return fail(ncclSystemError, "ncclAllReduce: out of memory for %zu floats", count);
    }
    for (size_t at = 0; at < count && comm->size > 1; at += kChunk) {
        int c = (int)(count - at < kChunk ? count - at : kChunk);
        int rc = MPI_SUCCESS;
        if (comm->rank == 0) {
            for (int r = 1; r < comm->size && rc == MPI_SUCCESS; r++) {
                rc = MPI_Recv(in, c, MPI_FLOAT, r, 7, comm->comm, MPI_STATUS_IGNORE);
                for (int i = 0; rc == MPI_SUCCESS && i < c; i++) x[at + i] += in[i];
            }
        } else {
            rc = MPI_Send(x + at, c, MPI_FLOAT, 0, 7, comm->comm);
        }
        if (rc == MPI_SUCCESS) rc = MPI_Bcast(x + at, c, MPI_FLOAT, 0, comm->comm);
        if (rc != MPI_SUCCESS) {
            free(in);
            return fail(ncclRemoteError, "ncclAllReduce: MPI failed (error %d) on rank %d", rc,
                        comm->rank);
        }
    }
    free(in);
    return ncclSuccess;
}

EXPORT ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async) {
    if (!comm || !async) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: a NULL argument");
    *async = ncclSuccess;  // every call completed (or failed) before it returned
    return ncclSuccess;
}

EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    if (mpi_ready()) MPI_Comm_free(&comm->comm);
    delete comm;
    return ncclSuccess;
}

// after a failure: no collective (MPI_Comm_free is one), the peers may be gone
EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm) {
    delete comm;
    return ncclSuccess;
}
