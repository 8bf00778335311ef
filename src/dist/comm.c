/* comm.c - the processes of a data-parallel run (see comm.h): MPI when the
 * build has it (BITLAB_HAVE_MPI) and mpirun started us, else one process. */
#include "dist/comm.h"
#include "dist/device_comm.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BITLAB_HAVE_MPI
#include <mpi.h>
#endif

int bl_comm_launcher_size(const char **var) {
    static const char *const VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof VARS / sizeof VARS[0]; i++) {
        const char *s = getenv(VARS[i]);
        char *end;
        long v = s && *s ? strtol(s, &end, 10) : 0;
        if (v > 0 && *end == '\0' && v <= INT_MAX) {
            if (var) *var = VARS[i];
            return (int)v;
        }
    }
    if (var) *var = NULL;
    return 0;
}

#ifdef BITLAB_HAVE_MPI

// ----------------------------------------------------------------------------
// with MPI

static struct {
    bool joined;
    int rank, size;
    int local_rank; /* among the processes of this node */
    void *scratch; /* rank 0's receive buffer of the sums, grown as needed */
    size_t scratch_bytes;
} g = {.size = 1};

bool bl_comm_built_with_mpi(void) { return true; }
int bl_comm_rank(void) { return g.rank; }
int bl_comm_size(void) { return g.size; }
int bl_comm_local_rank(void) { return g.local_rank; }

static int mpi_fail(int rc, const char *what, BlError *err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return bl_fail(err, "rank %d of %d: %s: %s", g.rank, g.size, what, msg);
}

int bl_comm_init(int *argc, char ***argv, BlError *err) {
    if (g.joined || bl_comm_launcher_size(NULL) == 0) return 0; /* no launcher: one process */
    int provided = 0;
    /* the script may run in the dashboard's worker thread, never two threads at once */
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return bl_fail(err, "MPI_Init failed (error %d)", rc);
    g.joined = true;
    /* a peer that is gone is an error to report, not an abort inside MPI */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size);
    /* the processes that share this node's memory: one GPU each */
    MPI_Comm node;
    rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g.rank, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "finding the processes of this node", err);
    MPI_Comm_rank(node, &g.local_rank);
    MPI_Comm_free(&node);
    if (provided < MPI_THREAD_SERIALIZED && g.size > 1)
        return bl_fail(err, "rank %d: this MPI offers thread level %d, bitlab needs "
                       "MPI_THREAD_SERIALIZED (%d)", g.rank, provided, MPI_THREAD_SERIALIZED);
    return 0;
}

void bl_comm_finalize(void) {
    if (!g.joined) return;
    bl_device_comm_free(); /* its communicator was made over MPI (and may live on it) */
    free(g.scratch);
    g.scratch = NULL;
    g.scratch_bytes = 0;
    MPI_Finalize();
    g.joined = false;
}

void bl_comm_abort(int code) {
    if (g.joined && g.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

/* messages of at most this many elements: MPI counts are ints */
#define CHUNK ((size_t)1 << 26)

/* The fixed-order sum of n elements of type t (element size es): rank 0
 * receives rank 1's, 2's, … in turn and adds each into its own, then the
 * sum goes out to all. */
#define SUM_BODY(T, MPI_T)                                                                \
    if (g.size <= 1 || n == 0) return 0;                                                  \
    size_t chunk = n < CHUNK ? n : CHUNK;                                                 \
    if (g.rank == 0 && g.scratch_bytes < chunk * sizeof(T)) {                             \
        void *s = realloc(g.scratch, chunk * sizeof(T));                                  \
        if (!s) return bl_fail(err, "rank 0: out of memory for the reduction's %zu values", chunk); \
        g.scratch = s;                                                                    \
        g.scratch_bytes = chunk * sizeof(T);                                              \
    }                                                                                     \
    for (size_t at = 0; at < n; at += chunk) {                                            \
        int c = (int)(n - at < chunk ? n - at : chunk);                                   \
        int rc;                                                                           \
        if (g.rank == 0) {                                                                \
            T *in = g.scratch;                                                            \
            for (int r = 1; r < g.size; r++) {                                            \
                rc = MPI_Recv(in, c, MPI_T, r, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);     \
                if (rc != MPI_SUCCESS) return mpi_fail(rc, "receiving a sum's part", err); \
                for (int i = 0; i < c; i++) x[at + i] += in[i];                           \
            }                                                                             \
        } else {                                                                          \
            rc = MPI_Send(x + at, c, MPI_T, 0, 1, MPI_COMM_WORLD);                        \
            if (rc != MPI_SUCCESS) return mpi_fail(rc, "sending a sum's part", err);      \
        }                                                                                 \
        rc = MPI_Bcast(x + at, c, MPI_T, 0, MPI_COMM_WORLD);                              \
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "broadcasting a sum", err);            \
    }                                                                                     \
    return 0;

int bl_comm_sum_floats(float *x, size_t n, BlError *err) { SUM_BODY(float, MPI_FLOAT) }
int bl_comm_sum_doubles(double *x, size_t n, BlError *err) { SUM_BODY(double, MPI_DOUBLE) }

int bl_comm_bcast(void *buf, size_t n, BlError *err) {
    if (g.size <= 1) return 0;
    for (size_t at = 0; at < n; at += CHUNK) {
        int c = (int)(n - at < CHUNK ? n - at : CHUNK);
        int rc = MPI_Bcast((char *)buf + at, c, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "broadcast", err);
    }
    return 0;
}

#else

// ----------------------------------------------------------------------------
// without MPI: one process

bool bl_comm_built_with_mpi(void) { return false; }
int bl_comm_rank(void) { return 0; }
int bl_comm_size(void) { return 1; }
int bl_comm_local_rank(void) { return 0; }

int bl_comm_init(int *argc, char ***argv, BlError *err) {
    (void)argc, (void)argv, (void)err;
    return 0;
}

void bl_comm_finalize(void) {}
void bl_comm_abort(int code) { (void)code; }

int bl_comm_sum_floats(float *x, size_t n, BlError *err) {
    (void)x, (void)n, (void)err;
    return 0;
}

int bl_comm_sum_doubles(double *x, size_t n, BlError *err) {
    (void)x, (void)n, (void)err;
    return 0;
}

int bl_comm_bcast(void *buf, size_t n, BlError *err) {
    (void)buf, (void)n, (void)err;
    return 0;
}

#endif

// ----------------------------------------------------------------------------
// on top of the above

int bl_comm_bcast_string(char **s, BlError *err) {
    if (bl_comm_size() <= 1) return 0;
    /* the length first (UINT64_MAX: NULL), then the bytes */
    uint64_t len = bl_comm_rank() == 0 ? (*s ? strlen(*s) : UINT64_MAX) : 0;
    if (bl_comm_bcast(&len, sizeof len, err)) return -1;
    if (bl_comm_rank() != 0) {
        *s = NULL;
        if (len == UINT64_MAX) return 0;
        if (!(*s = bl_malloc((size_t)len + 1, err))) return -1;
        (*s)[len] = 0;
    }
    if (len == UINT64_MAX) return 0;
    return bl_comm_bcast(*s, (size_t)len, err);
}
