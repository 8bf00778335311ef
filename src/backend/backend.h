/* backend.h - where the tensors live and who runs the ops.
 *
 * A backend is a table of function pointers: memory (alloc/free and copies
 * between host and backend memory) and the ops of ops/ops.h with the same
 * signatures and contract, all taking backend pointers. The forward, the
 * decoder and (later) the trainer call ops only through this table, so the
 * CUDA backend (kernels/) runs the same code paths as the CPU reference.
 *
 * Ops return void, as in ops/ops.h: a device backend queues them and reports a
 * failure at the next sync(). The CPU backend's memory IS host memory. */
#ifndef BITLAB_BACKEND_H
#define BITLAB_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "ops/adamw.h"
#include "ops/loss.h"

/* The weight of one student BitLinear as bitlinear_weff and ternary_matmul
 * read it (backend pointers): W + dense + B_cat·A_cat, where every adapter
 * of the layer's LoRA stack (frozen ones included) sits side by side in
 * B_cat with its α/r folded in, and their A's stacked in A_cat, so the whole
 * stack is one low-rank product of rank Σ r_i. */
typedef struct {
    const float *w;      /* [out, in] frozen weight (a weights_upload handle or plain memory) */
    const float *dense;  /* [out, in] dense ΔW, or NULL */
    const float *lora_b; /* [out, rank] */
    const float *lora_a; /* [rank, in] */
    int rank;            /* 0: no adapters */
    int out, in;
    float lambda;
} BlWeffSpec;

/* A backend's memory (mem_stats): bytes bitlab holds through alloc,
 * weights_upload and the backend's own scratch, and their high-water mark
 * since the last reset; the device's free/total from the driver (0 where
 * there is no such figure, e.g. the CPU). */
typedef struct {
    size_t live, peak;
    size_t device_free, device_total;
} BlMemStats;

typedef struct BlBackend {
    const char *name; /* "cpu", "cuda" */

    /* memory: alloc returns zero-filled memory, or NULL with err set */
    void *(*alloc)(size_t bytes, BlError *err);
    void (*free)(void *p);
    int (*upload)(void *dst, const void *host_src, size_t bytes, BlError *err);
    int (*download)(void *host_dst, const void *src, size_t bytes, BlError *err);
    /* waits for every queued op; reports an asynchronous failure */
    int (*sync)(BlError *err);

    /* the ops of ops/ops.h */
    void (*matmul)(float *y, const float *x, const float *w, const float *bias, int M, int N,
                   int K);
    void (*matmul_backward)(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int M, int N, int K);
    void (*rmsnorm)(float *y, float *rstd, const float *x, const float *g, int M, int D,
                    float eps);
    void (*rmsnorm_backward)(float *dx, float *dg, const float *dy, const float *x,
                             const float *g, const float *rstd, int M, int D);
    void (*rope)(float *x, const int *pos, int M, int n_heads, int head_dim, float theta,
                 bool interleaved);
    void (*rope_backward)(float *dx, const int *pos, int M, int n_heads, int head_dim,
                          float theta, bool interleaved);
    /* doc_start [B·T] (backend memory) or NULL: packed rows, see bl_attention */
    void (*attention)(float *out, float *att, const float *q, const float *k, const float *v,
                      const int *lens, const int *doc_start, int B, int T, int nh, int nkv,
                      int hd);
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout,
                               const float *att, const float *q, const float *k, const float *v,
                               const int *lens, const int *doc_start, int B, int T, int nh,
                               int nkv, int hd);
    void (*swiglu)(float *y, const float *gate, const float *up, int M, int H, int ld);
    void (*swiglu_backward)(float *dgate, float *dup, const float *dy, const float *gate,
                            const float *up, int M, int H, int ld);
    void (*embed)(float *y, const float *table, const int *ids, int M, int D);

    /* inference: ops/ops_decode.h */
    void (*attention_kv)(float *out, const float *q, const float *kcache, const float *vcache,
                         int n, int pos0, int nh, int nkv, int hd);

    /* glue the blocks need between ops: y[n] += x[n] (residual adds), and a
     * strided copy of a [rows, cols] block (splitting Phi-3's fused qkv) */
    void (*add)(float *y, const float *x, size_t n);
    void (*copy2d)(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols);

    /* ---- the student and the trainer: twins of ops/quant.h, ops/loss.h and
     * ops/adamw.h (bitlinear_weff: bl_lora_merge + bl_weff). Loss rows (BlLossRows.tokens/mask) and every tensor
     * are backend pointers; values returned as double are read back (the
     * call waits), NAN on a device failure. */

    /* row-major C[M,N] = alpha·op(A)·op(B) + beta·C (cblas_sgemm), fp32 */
    void (*gemm)(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);
    /* bl_actq_blend (λ = 1: bl_actq); fails only for a width other than 4, 8, 16 */
    int (*actq)(float *xq, float *scale, const float *x, int M, int D, int bits, float lambda,
                BlError *err);
    /* weff[out·in] = (1−λ)(W+ΔW) + λ·wq(W+ΔW), ΔW as in BlWeffSpec */
    void (*bitlinear_weff)(float *weff, const BlWeffSpec *w);
    /* the λ = 1 student linear y[M,out] = actq(x)·wq(W+ΔW)ᵀ (+ bias) on its
     * integer fast path (CUDA: int8 × ternary int8 → int32, scaled once);
     * w->lambda must be 1 and bits 8 or 4 */
    int (*ternary_matmul)(float *y, const float *x, const BlWeffSpec *w, const float *bias, int M,
                          int bits, BlError *err);
    double (*ce_loss)(float *dlogits, float grad_weight, const float *logits,
                      const BlLossRows *rows);
    double (*kl_loss)(float *dlogits, float grad_weight, const float *s, const float *t,
                      const BlLossRows *rows, float tau);
    void (*topk_logprobs)(int *ids, float *logp, const float *t, int n, int V, int K, float tau);
    double (*topk_kl_loss)(float *dlogits, float grad_weight, const float *s, const int *t_ids,
                           const float *t_logp, int K, const BlLossRows *rows, float tau);
    /* hs, ht, dhs: host arrays of backend pointers; layer_w host; mask backend */
    double (*hidden_loss)(float *const *dhs, float w_cos, float w_mag, const float *const *hs,
                          const float *const *ht, const float *layer_w, int n_layers,
                          const uint8_t *mask, int M, int D, double *mag);
    /* bl_relation_kl: n relation-logit matrices [T, T] of one sequence, sel
     * and lo [T] (lo NULL: windows from 0); s overwritten by its gradient */
    double (*relation_kl)(float *s, const float *t, int n, int T, const uint8_t *sel,
                          const int *lo, float g);
    /* bl_adamw_step on (p, g, m, v) of n values; t = the step number (≥ 1) */
    void (*adamw_step)(float *p, const float *g, float *m, float *v, size_t n, long t,
                       const BlAdamWConfig *c);
    /* bl_adamw_check: true when adamw_step with these very arguments would
     * leave every updated p, m and v finite (the same element arithmetic,
     * bit for bit); writes nothing (read back: the call waits). True for
     * n = 0; false on a device failure (sync reports it). The non-finite
     * guard checks every tensor run of an update first, then steps them
     * all only if every check is true. */
    bool (*adamw_check)(const float *p, const float *g, const float *m, const float *v, size_t n,
                        long t, const BlAdamWConfig *c);
    /* the guards' pieces: Σ x², x *= f */
    double (*sumsq)(const float *x, size_t n);
    void (*scale)(float *x, size_t n, float f);
    /* out[i] = Σ x[off[i] .. off[i+1])² for i < n (out, off: host arrays),
     * i.e. sumsq of n tensors lying back to back, in one pass and one
     * read-back; NAN entries on a device failure */
    void (*sumsq_segments)(double *out, const float *x, const size_t *off, int n);
    /* bytes zero bytes at x (gradients between steps: x *= 0 would keep NaN) */
    void (*zero)(void *x, size_t bytes);

    /* ---- what a benchmark reports: memory (reset_peak starts a new
     * high-water mark after reading it) and the device's name */
    void (*mem_stats)(BlMemStats *out, bool reset_peak);
    const char *(*device_name)(void);

    /* ---- frozen weights in the backend's own format (CPU: an fp32 copy;
     * CUDA: bf16, rounded once). The handle is typed float * so it can stand
     * wherever the ops above take a weight or the embedding table; it must
     * not be downloaded or read as fp32. */
    float *(*weights_upload)(const float *host, size_t n, BlError *err);
    void (*weights_free)(float *w);
} BlBackend;

/* The CPU reference backend (OpenBLAS), always available. */
const BlBackend *bl_backend_cpu(void);

/* Whether the CUDA backend can run in this process. The backend is a shared
 * module (libbitlab_cuda.so, see cuda_module.h) loaded on the first call of
 * any function below, from the running executable's directory, else from
 * $BITLAB_CUDA_MODULE; a process that never calls them never maps the CUDA
 * libraries. Anything but BL_CUDA_READY comes with its reason in err. */
typedef enum {
    BL_CUDA_READY,       /* the module is loaded and a device is present */
    BL_CUDA_NOT_BUILT,   /* no module: "bitlab was built without CUDA ..." */
    BL_CUDA_NO_DEVICE,   /* "no CUDA device" (none, or no usable driver) */
    BL_CUDA_FAILED,      /* "cannot load libbitlab_cuda.so: <dlerror>", a module
                          * from another build, or the driver's own error */
} BlCudaStatus;
BlCudaStatus bl_backend_cuda_status(BlError *err);

/* The CUDA backend (kernels/) on device `device` (0-based), initialised on
 * first use; NULL with err set (as bl_backend_cuda_status says, or why the
 * device cannot be used) otherwise. A process holds one device: once the
 * backend runs on one, asking for another is an error naming both (a
 * data-parallel run takes one GPU per local rank, cli/args.c). */
const BlBackend *bl_backend_cuda_on(int device, BlError *err);
/* The CUDA backend on the device the process holds, device 0 before any. */
const BlBackend *bl_backend_cuda(BlError *err);
/* Devices visible to the process (0 when none), -1 with err set when the
 * module does not load or the driver fails. */
int bl_backend_cuda_device_count(BlError *err);

/* NCCL between the processes' GPUs (cuda_module.h; the library is loaded
 * on first use, so only a data-parallel CUDA run needs it installed):
 * rank 0's unique id, which every rank passes to nccl_init with its rank
 * and the world size (dist/device_comm.h bootstraps it over MPI), then
 * in-place sums of device buffers of the CUDA backend, ordered on its
 * stream. Each fails with err set ("data-parallel on CUDA needs NCCL: ..."). */
#define BL_NCCL_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES */
int bl_backend_cuda_nccl_unique_id(unsigned char id[BL_NCCL_ID_BYTES], BlError *err);
int bl_backend_cuda_nccl_init(const unsigned char id[BL_NCCL_ID_BYTES], int rank, int size,
                              BlError *err);
int bl_backend_cuda_nccl_sum(float *x, size_t n, BlError *err);
void bl_backend_cuda_nccl_free(void);
/* bl_backend_cuda_status() == BL_CUDA_READY */
bool bl_backend_cuda_available(void);

/* --device NAME: "cpu", "cuda" or "auto" (CUDA when available, else the
 * CPU); NULL (or "") means "cpu". NULL with err set for an unknown name or
 * an unavailable CUDA. */
const BlBackend *bl_backend_select(const char *name, BlError *err);

#endif
