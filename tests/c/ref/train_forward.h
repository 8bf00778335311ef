/* train_forward.h - the student's training forward and backward over a
 * right-padded batch [B, T] (CPU, host memory), saving what the backward
 * needs (llm.c style: one arena of activations per batch shape).
 *
 * Saved per layer: the block input (residual), q and k after RoPE, v, the
 * attention probabilities, the attention output, o_proj's output (with the
 * post-attention norm), the residual after attention, the MLP's gate/up
 * pre-activations and the rstd of every RMSNorm. Cheap elementwise values
 * (the normed inputs, actq's output, swiglu's output) are recomputed in the
 * backward instead of stored, and so is Weff, one matrix at a time.
 *
 * The block output hidden states are the residual stream between blocks, so
 * they cost nothing extra. Logits are produced in row chunks on demand
 * (bl_train_logits), so the step never holds a second [B·T, V] array. */
#ifndef BITLAB_TRAIN_FORWARD_H
#define BITLAB_TRAIN_FORWARD_H

#include <stddef.h>

#include "core/error.h"
#include "model/model.h"
#include "bitlinear.h"
#include "train/student.h"

typedef struct {
    const BlModel *model;
    int Bcap, Tcap;  /* capacity */
    int B, T;        /* shape of the last forward */
    int *pos;        /* [M] positions */
    int *lens;       /* [B] */
    /* saved activations, per layer l at offset l·M·width */
    float *xs;       /* [L+1, M, dim]: block inputs; xs[l+1] = block l's output */
    float *rstd1, *rstd2; /* [L, M] attention / MLP norm */
    float *q, *k, *v;     /* [L, M, qd|kvd], q and k rotated */
    float *att;           /* [L, B, nh, T, T] */
    float *ao;            /* [L, M, qd] */
    float *xmid;          /* [L, M, dim] residual after attention */
    float *gu;            /* [L, M, 2H]: fused rows [gate|up], else gate block then up block */
    float *opre, *rstd_pa; /* [L, M, dim], [L, M] with the post-attention norm, else NULL */
    float *rstd_sub;      /* [L, BL_LIN_KINDS, M] with SubLN, else NULL */
    float *xf, *rstd_f;   /* [M, dim] final-normed stream, [M] */
    /* scratch of one block (forward and backward) */
    float *xn, *xq, *y, *act, *weff;
    float *lscratch;      /* LoRA backward scratch, grown by the forward to M·rank */
    size_t lscratch_floats;
    float *dx, *dx2, *dxn, *dxf, *dgu, *dact, *dq, *dk, *dv, *dao, *dp;
    size_t bytes_saved, bytes_scratch;
} BlTrainState;

int bl_build_train_state(BlTrainState *s, const BlStudent *st, int B, int T, BlError *err);
void bl_free_train_state(BlTrainState *s);

/* Student forward of tokens [B·T] (padding ignored) with lens [B]. Fails for
 * a shape beyond the capacity, bad lens or tokens, or out of memory. */
int bl_train_forward(BlTrainState *s, BlStudent *st, const int *tokens, const int *lens, int B,
                     int T, BlError *err);

/* logits [n, V] of rows row0..row0+n of the last forward. */
void bl_train_logits(const BlTrainState *s, int row0, int n, float *logits);
/* Block l's output hidden state [B·T, dim] of the last forward. */
const float *bl_train_hidden(const BlTrainState *s, int l);

/* Called with the gradient w.r.t. block l's output (l from n_layers−1 down
 * to 0) so the hidden losses can add theirs. */
typedef void (*BlHiddenGradFn)(void *ctx, int l, float *dh);

/* Backward of the last forward from dxf [B·T, dim] (the gradient w.r.t. the
 * final-normed stream, i.e. dlogits·lm_head; rows may be 0), accumulating
 * into the student's trainable gradients. hidden_grad may be NULL. */
void bl_train_backward(BlTrainState *s, BlStudent *st, const float *dxf,
                       BlHiddenGradFn hidden_grad, void *ctx);

/* ---- shared by the forward and the backward ---------------------------- */

/* xq[M, in] = actq(subln(x)); rstd[M] receives SubLN's 1/rms (may be NULL
 * without SubLN). */
void bl_train_bitlinear_input(float *xq, float *rstd, const float *x, const BlBitLinear *L, int M);

/* Causal attention backward from the saved probabilities with per-head
 * sgemm (same contract as bl_attention_backward); dp is scratch of T·T. */
void bl_train_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                 const float *att, const float *q, const float *k,
                                 const float *v, const int *lens, int B, int T, int nh, int nkv,
                                 int hd, float *dp);

#endif
