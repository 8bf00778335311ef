/* backend.h - where the tensors live and who runs the ops.
 *
 * A backend is a table of function pointers: memory (alloc/free and copies
 * between host and backend memory) and the ops of nn/ops.h with the same
 * signatures and contract, all taking backend pointers. The forward, the
 * decoder and (later) the trainer call ops only through this table, so the
 * CUDA backend (kernels/) runs the same code paths as the CPU reference.
 *
 * Ops return void, as in nn/ops.h: a device backend queues them and reports a
 * failure at the next sync(). The CPU backend's memory IS host memory. */
#ifndef BITLAB_BACKEND_H
#define BITLAB_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct BlBackend {
    const char *name; /* "cpu", "cuda" */

    /* memory: alloc returns zero-filled memory, or NULL with err set */
    void *(*alloc)(size_t bytes, BlError *err);
    void (*free)(void *p);
    int (*upload)(void *dst, const void *host_src, size_t bytes, BlError *err);
    int (*download)(void *host_dst, const void *src, size_t bytes, BlError *err);
    /* waits for every queued op; reports an asynchronous failure */
    int (*sync)(BlError *err);

    /* the ops of nn/ops.h */
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
    void (*attention)(float *out, float *att, const float *q, const float *k, const float *v,
                      const int *lens, int B, int T, int nh, int nkv, int hd);
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout,
                               const float *att, const float *q, const float *k, const float *v,
                               const int *lens, int B, int T, int nh, int nkv, int hd);
    void (*swiglu)(float *y, const float *gate, const float *up, int M, int H, int ld);
    void (*swiglu_backward)(float *dgate, float *dup, const float *dy, const float *gate,
                            const float *up, int M, int H, int ld);
    void (*embed)(float *y, const float *table, const int *ids, int M, int D);
    void (*embed_backward)(float *dtable, const float *dy, const int *ids, int M, int D);

    /* inference: nn/ops_decode.h */
    void (*attention_kv)(float *out, const float *q, const float *kcache, const float *vcache,
                         int n, int pos0, int nh, int nkv, int hd);

    /* glue the blocks need between ops: y[n] += x[n] (residual adds), and a
     * strided copy of a [rows, cols] block (splitting Phi-3's fused qkv) */
    void (*add)(float *y, const float *x, size_t n);
    void (*copy2d)(float *dst, int ld_dst, const float *src, int ld_src, int rows, int cols);
} BlBackend;

/* The CPU reference backend (OpenBLAS), always available. */
const BlBackend *bl_backend_cpu(void);

#endif
