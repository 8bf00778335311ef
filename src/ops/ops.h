/* ops.h - the CPU reference of every transformer op: one forward and one
 * backward each (llm.c style; embed has no backward: nothing trains the
 * table). Activations are row-major [M, D] with M = batch·seq rows (one
 * row per token). Sequences are right-padded: row b·T + t is padding when
 * t >= lens[b]; padded query rows produce zeros.
 *
 * Backward functions ACCUMULATE (+=) into parameter gradients (dw, db, dg)
 * so micro-batches can be summed, and OVERWRITE input gradients
 * (dx, dq, ...), unless noted. Any gradient pointer may be NULL to skip it. */
#ifndef BITLAB_OPS_H
#define BITLAB_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

/* y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) — OpenBLAS sgemm */
void bl_matmul(float *y, const float *x, const float *w, const float *bias, int M, int N, int K);
/* dx[M,K] = dy·w ; dw[N,K] += dyᵀ·x ; db[N] += Σ_rows dy */
void bl_matmul_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int M, int N, int K);

/* y = x / rms(x) · g ; rstd[M] (may be NULL) receives 1/rms for the backward */
void bl_rmsnorm(float *y, float *rstd, const float *x, const float *g, int M, int D, float eps);
void bl_rmsnorm_backward(float *dx, float *dg, const float *dy, const float *x, const float *g,
                         const float *rstd, int M, int D);

/* In-place rotary embedding of x[M, n_heads·head_dim] at positions pos[M].
 * interleaved: pairs (2i, 2i+1) (ggml "normal"); else pairs (i, i+hd/2) (HF/neox). */
void bl_rope(float *x, const int *pos, int M, int n_heads, int head_dim, float theta, bool interleaved);
/* In-place: turns dL/d(rotated) into dL/d(unrotated) (the inverse rotation). */
void bl_rope_backward(float *dx, const int *pos, int M, int n_heads, int head_dim, float theta,
                      bool interleaved);

/* Causal GQA attention with right padding. q[B·T, nh·hd], k/v[B·T, nkv·hd],
 * out[B·T, nh·hd]. att (may be NULL) receives the probabilities
 * [B, nh, T, T] for the backward. Scale 1/sqrt(hd).
 *
 * Packed rows: doc_start [B·T] (or NULL: one document per row) gives, for
 * each valid token t < lens[b], the row index of the first token of its
 * document; query t then sees keys doc_start[b·T + t] .. t only, so a
 * document attends exactly as if it were a row of its own. A document is a
 * run of equal entries (valid input: doc_start[t] is t or doc_start[t − 1],
 * bl_doc_start_check); entries past lens[b] are not read. */
void bl_attention(float *out, float *att, const float *q, const float *k, const float *v,
                  const int *lens, const int *doc_start, int B, int T, int nh, int nkv, int hd);
void bl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                           const float *q, const float *k, const float *v, const int *lens,
                           const int *doc_start, int B, int T, int nh, int nkv, int hd);

/* The end (exclusive) of the document that starts at row s of a sequence of
 * L valid tokens whose doc_start entries begin at ds (NULL: the whole row). */
static inline int bl_doc_end(const int *ds, int s, int L) {
    if (!ds) return L;
    int e = s + 1;
    while (e < L && ds[e] == ds[s]) e++;
    return e;
}

/* 0 when doc_start [B·T] is a valid document layout for lens (every valid
 * entry t is t or the entry before it, so entry 0 is 0); else -1 with err
 * naming the first bad entry. */
int bl_doc_start_check(const int *doc_start, const int *lens, int B, int T, BlError *err);

/* y[M,H] = silu(gate)·up, where gate/up rows have leading dimension ld
 * (ld = H for separate matrices, 2H for Phi-3's fused gate_up output). */
void bl_swiglu(float *y, const float *gate, const float *up, int M, int H, int ld);
void bl_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate,
                        const float *up, int M, int H, int ld);

/* y[M,D] = table[ids[m]] */
void bl_embed(float *y, const float *table, const int *ids, int M, int D);

#endif
