// context.cu - the CUDA backend's process-wide state: one device, one stream,
// the cuBLAS and cuBLASLt handles, growable scratch slots, the sticky first
// error, and the registry of bf16 weight tensors (see context.cuh).
//
// One host thread drives the backend at a time (the trainer's worker or the
// CLI), as with the CPU backend's BLAS calls.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>
#include <unordered_map>

#include "common.cuh"

// ----------------------------------------------------------------------------
// state

namespace {

struct Range {
    uintptr_t lo, hi;  // [lo, hi)
};

struct Context {
    bool ready;
    int device;  // the one cudaSetDevice chose (valid when ready)
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    char name[256];
    void *scratch[BL_WS_SLOTS];
    size_t scratch_bytes[BL_WS_SLOTS];
    char err[1024];  // first failure since the last sync, "" when none
    Range *reg;      // registered bf16 tensors, sorted by lo
    int nreg, capreg;
    int int8_engine;
    size_t live, peak;  // bytes from bl_cuda_malloc and the scratch slots (mem_stats)
};

Context ctx;
// sizes of bl_cuda_malloc's blocks, for the live count at bl_cuda_free
std::unordered_map<void *, size_t> *alloc_sizes;

void mem_add(size_t bytes) {
    ctx.live += bytes;
    if (ctx.live > ctx.peak) ctx.peak = ctx.live;
}

const char *cublas_status_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}

void record(const char *file, int line, const char *what, const char *why) {
    if (ctx.err[0]) return;  // the first failure explains the rest
    const char *base = strrchr(file, '/');
    snprintf(ctx.err, sizeof ctx.err, "kernels/%s:%d: %s: %s", base ? base + 1 : file, line, what,
             why);
}

}  // namespace

int bl_cuda_note_(cudaError_t e, const char *file, int line, const char *what) {
    if (e == cudaSuccess) return 0;
    char why[256];
    snprintf(why, sizeof why, "%s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
    record(file, line, what, why);
    return -1;
}

int bl_cublas_note_(cublasStatus_t s, const char *file, int line, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    record(file, line, what, cublas_status_name(s));
    return -1;
}

int bl_cuda_fail_(const char *file, int line, const char *msg) {
    record(file, line, "", msg);
    return -1;
}

cudaStream_t bl_cuda_stream_(void) { return ctx.stream; }
cublasHandle_t bl_cublas_(void) { return ctx.blas; }
cublasLtHandle_t bl_cublaslt_(void) { return ctx.lt; }
int bl_cuda_int8_engine_(void) { return ctx.int8_engine; }

void *bl_cuda_scratch_(int slot, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (ctx.scratch_bytes[slot] >= bytes) return ctx.scratch[slot];
    // queued kernels may still read the old buffer
    if (BL_CUDA_CHECK(cudaStreamSynchronize(ctx.stream))) return NULL;
    if (ctx.scratch[slot]) cudaFree(ctx.scratch[slot]);
    ctx.live -= ctx.scratch_bytes[slot];
    ctx.scratch[slot] = NULL;
    ctx.scratch_bytes[slot] = 0;
    size_t grown = bytes + bytes / 4;  // a little headroom against regrowing by a row
    if (BL_CUDA_CHECK(cudaMalloc(&ctx.scratch[slot], grown))) return NULL;
    ctx.scratch_bytes[slot] = grown;
    mem_add(grown);
    return ctx.scratch[slot];
}

// ----------------------------------------------------------------------------
// device and lifetime

int bl_cuda_device_count(int *n, BlError *err) {
    *n = 0;
    cudaError_t e = cudaGetDeviceCount(n);
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
        cudaGetLastError();  // clear the sticky runtime error
        *n = 0;
        return 0;
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        *n = 0;
        return bl_fail(err, "cuda: cudaGetDeviceCount: %s (%s)", cudaGetErrorName(e),
                       cudaGetErrorString(e));
    }
    return 0;
}

int bl_cuda_init(int device, BlError *err) {
    if (ctx.ready && device == ctx.device) return 0;
    if (ctx.ready)
        return bl_fail(err, "cuda: this process runs on device %d (%s); it cannot also open device %d "
                       "(one device per process)", ctx.device, ctx.name, device);
    int n;
    if (bl_cuda_device_count(&n, err)) return -1;
    if (n == 0) return bl_fail(err, "no CUDA device");
    if (device < 0 || device >= n)
        return bl_fail(err, "cuda: no device %d (%d visible: 0..%d)", device, n, n - 1);
    cudaError_t e = cudaSetDevice(device);
    cudaDeviceProp prop;
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking);
    if (e != cudaSuccess)
        return bl_fail(err, "cuda: device %d: %s (%s)", device, cudaGetErrorName(e),
                       cudaGetErrorString(e));
    if (prop.major < 8) {
        cudaStreamDestroy(ctx.stream);
        return bl_fail(err, "cuda: %s (device %d) is sm_%d%d; bitlab's kernels need sm_80 or newer",
                       prop.name, device, prop.major, prop.minor);
    }
    cublasStatus_t s = cublasCreate(&ctx.blas);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(ctx.blas, ctx.stream);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtCreate(&ctx.lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(ctx.stream);
        return bl_fail(err, "cuda: creating the cuBLAS handles: %s", cublas_status_name(s));
    }
    snprintf(ctx.name, sizeof ctx.name, "%.200s (sm_%d%d, device %d)", prop.name, prop.major,
             prop.minor, device);
    ctx.device = device;
    ctx.err[0] = '\0';
    ctx.ready = true;
    return 0;
}

int bl_cuda_device(void) { return ctx.ready ? ctx.device : -1; }

void bl_cuda_shutdown(void) {
    if (!ctx.ready) return;
    cudaStreamSynchronize(ctx.stream);
    for (int i = 0; i < BL_WS_SLOTS; i++)
        if (ctx.scratch[i]) cudaFree(ctx.scratch[i]);
    cublasLtDestroy(ctx.lt);
    cublasDestroy(ctx.blas);
    cudaStreamDestroy(ctx.stream);
    free(ctx.reg);
    delete alloc_sizes;
    alloc_sizes = NULL;
    memset(&ctx, 0, sizeof ctx);
}

const char *bl_cuda_device_name(void) { return ctx.name; }

void bl_cuda_set_int8_engine(int engine) { ctx.int8_engine = engine; }

// ----------------------------------------------------------------------------
// memory

static int fail_cuda(BlError *err, const char *what, cudaError_t e) {
    return bl_fail(err, "cuda: %s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

void *bl_cuda_malloc(size_t bytes, BlError *err) {
    void *p = NULL;
    if (!alloc_sizes) alloc_sizes = new (std::nothrow) std::unordered_map<void *, size_t>();
    if (!alloc_sizes) {
        bl_fail(err, "cuda: out of host memory for the allocation table");
        return NULL;
    }
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaSuccess) e = cudaMemsetAsync(p, 0, bytes ? bytes : 1, ctx.stream);
    if (e != cudaSuccess) {
        if (p) cudaFree(p);
        char what[64];
        snprintf(what, sizeof what, "allocating %zu bytes", bytes);
        fail_cuda(err, what, e);
        return NULL;
    }
    (*alloc_sizes)[p] = bytes;
    mem_add(bytes);
    return p;
}

void bl_cuda_free(void *p) {
    if (!p) return;
    if (alloc_sizes) {
        auto it = alloc_sizes->find(p);
        if (it != alloc_sizes->end()) {
            ctx.live -= it->second;
            alloc_sizes->erase(it);
        }
    }
    cudaFree(p);  // cudaFree waits for the kernels that may use p
}

void bl_cuda_mem_stats(size_t *live, size_t *peak, size_t *dev_free, size_t *dev_total,
                       bool reset_peak) {
    *live = ctx.live;
    *peak = ctx.peak;
    *dev_free = *dev_total = 0;
    if (ctx.ready && cudaMemGetInfo(dev_free, dev_total) != cudaSuccess) {
        cudaGetLastError();
        *dev_free = *dev_total = 0;
    }
    if (reset_peak) ctx.peak = ctx.live;
}

int bl_cuda_upload(void *dst, const void *src, size_t bytes, BlError *err) {
    if (!bytes) return 0;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx.stream);
    // the host buffer may be reused as soon as we return
    if (e == cudaSuccess) e = cudaStreamSynchronize(ctx.stream);
    return e == cudaSuccess ? 0 : fail_cuda(err, "upload", e);
}

int bl_cuda_download(void *dst, const void *src, size_t bytes, BlError *err) {
    if (!bytes) return 0;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(ctx.stream);
    if (e != cudaSuccess) return fail_cuda(err, "download", e);
    // a kernel queued before may have failed without faulting the copy
    return ctx.err[0] ? bl_cuda_sync(err) : 0;
}

int bl_cuda_sync(BlError *err) {
    cudaError_t e = cudaStreamSynchronize(ctx.stream);
    if (e != cudaSuccess) BL_CUDA_CHECK(e);
    if (!ctx.err[0]) return 0;
    bl_fail(err, "cuda: %s", ctx.err);
    ctx.err[0] = '\0';
    return -1;
}

// ----------------------------------------------------------------------------
// bf16 weights

static int find_range(uintptr_t p) {  // index of the range holding p, or -1
    int lo = 0, hi = ctx.nreg - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (p < ctx.reg[mid].lo) hi = mid - 1;
        else if (p >= ctx.reg[mid].hi) lo = mid + 1;
        else return mid;
    }
    return -1;
}

bool bl_cuda_is_bf16(const void *p) { return find_range((uintptr_t)p) >= 0; }

float *bl_cuda_weights_upload(const float *host, size_t n, BlError *err) {
    if (ctx.nreg == ctx.capreg) {
        int cap = ctx.capreg ? 2 * ctx.capreg : 256;
        Range *r = (Range *)realloc(ctx.reg, sizeof(Range) * (size_t)cap);
        if (!r) {
            bl_fail(err, "cuda: out of memory growing the weight registry");
            return NULL;
        }
        ctx.reg = r;
        ctx.capreg = cap;
    }
    __nv_bfloat16 *dev = (__nv_bfloat16 *)bl_cuda_malloc(n * sizeof(__nv_bfloat16), err);
    if (!dev) return NULL;
    // convert on the host in chunks: the staging buffer stays small
    enum { CHUNK = 1 << 20 };
    size_t stage_n = n < (size_t)CHUNK ? n : (size_t)CHUNK;
    __nv_bfloat16 *stage = (__nv_bfloat16 *)malloc(sizeof(__nv_bfloat16) * (stage_n ? stage_n : 1));
    if (!stage) {
        bl_cuda_free(dev);
        bl_fail(err, "cuda: out of memory staging %zu weights", n);
        return NULL;
    }
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t c = n - i0 < (size_t)CHUNK ? n - i0 : (size_t)CHUNK;
        for (size_t i = 0; i < c; i++) stage[i] = __float2bfloat16_rn(host[i0 + i]);
        if (bl_cuda_upload(dev + i0, stage, c * sizeof(__nv_bfloat16), err)) {
            free(stage);
            bl_cuda_free(dev);
            return NULL;
        }
    }
    free(stage);
    Range r = {(uintptr_t)dev, (uintptr_t)dev + (n ? n : 1) * sizeof(__nv_bfloat16)};
    int at = ctx.nreg;
    while (at > 0 && ctx.reg[at - 1].lo > r.lo) {
        ctx.reg[at] = ctx.reg[at - 1];
        at--;
    }
    ctx.reg[at] = r;
    ctx.nreg++;
    return (float *)dev;
}

void bl_cuda_weights_free(float *w) {
    if (!w) return;
    int i = find_range((uintptr_t)w);
    if (i >= 0) {
        memmove(ctx.reg + i, ctx.reg + i + 1, sizeof(Range) * (size_t)(ctx.nreg - i - 1));
        ctx.nreg--;
    }
    bl_cuda_free(w);
}
