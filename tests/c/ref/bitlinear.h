/* bitlinear.h - the reference (host memory, CPU) BitNet b1.58 student
 * linear of the readable reference step (tests/c/ref; src/ has one BitLinear,
 * train/device_student.h's bl_bitlinear_apply, which this checks):
 *   y = xq·Weffᵀ + b,   Weff = (1−λ)·(W+ΔW) + λ·wq(W+ΔW),
 *   xq = n(x) + λa·(actq(n(x)) − n(x))   (λa = 1 − act_keep; 1: actq alone),
 * where ΔW comes from the layer's LoRA stack and n is an optional SubLN
 * RMSNorm with a trainable weight (init 1) applied before actq.
 *
 * Gradients use the straight-through estimator: actq and wq pass gradients
 * unchanged, so dWeff/d(W+ΔW) = I and dL/dΔW = dyᵀ·xq (never formed densely:
 * the LoRA factors get it through low-rank products). W and b stay frozen.
 * Weff is materialised transiently in a caller scratch of out·in floats, in
 * both forward and backward, so no layer holds a dense copy between calls. */
#ifndef BITLAB_BITLINEAR_H
#define BITLAB_BITLINEAR_H

#include "core/error.h"
#include "train/lora.h"
#include "train/student.h"

typedef struct {
    const float *w;      /* frozen [out, in] */
    const float *b;      /* frozen [out] or NULL */
    int out, in;
    BlLoraStack *lora;   /* NULL: ΔW = 0 */
    float lambda;        /* 0 = teacher precision … 1 = ternary */
    int act_bits;        /* 8, 4 or 16 (off) */
    /* the 1 − λa of the input blend x + λa·(actq(x) − x) (lambda_acts); zero,
     * as an initialiser leaves it, is λa = 1: actq alone */
    float act_keep;
    float *subln;        /* SubLN weight [in] (the caller initialises it to 1) or NULL */
    float *dsubln;       /* its gradient (accumulated) or NULL */
    float subln_eps;
} BlBitLinear;

/* Weff into weff[out·in]. */
void bl_bitlinear_weff(float *weff, const BlBitLinear *L);

/* y[M, out] from x[M, in]. Saves for the backward: xq[M, in] (the quantised
 * input) and, with SubLN, rstd[M] (else rstd may be NULL). weff is scratch of
 * out·in floats. Fails only for an unsupported act_bits. */
int bl_bitlinear_forward(float *y, float *xq, float *rstd, const float *x, const BlBitLinear *L,
                         int M, float *weff, BlError *err);

/* From dy[M, out]: dx[M, in] (overwritten, required) = SubLN backward of
 * dy·Weff; accumulates the trainable LoRA gradients and dsubln. x, xq and rstd
 * are the forward's input and saved values. weff is scratch of out·in floats,
 * lscratch of bl_lora_scratch_floats(L->lora, M) floats. */
void bl_bitlinear_backward(float *dx, const float *dy, const float *x, const float *xq,
                           const float *rstd, BlBitLinear *L, int M, float *weff,
                           float *lscratch);

/* The BitLinear of layer l's `kind` of a host student at its cfg's λ,
 * activation width and lambda_acts (lin.w == NULL when absent). */
BlBitLinear bl_student_bitlinear(BlStudent *s, int l, BlLinearKind kind);

#endif
