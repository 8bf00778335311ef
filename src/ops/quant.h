/* quant.h - the BitNet b1.58 quantisers of the student: absmean ternary
 * weights (wq) and per-token absmax activations (actq), the λ-mix that
 * anneals from full precision to ternary, and the integer form of wq for
 * packed export.
 *
 * Rounding is C roundf: half away from zero (2.5 → 3, −2.5 → −3). Note that
 * torch.round / numpy.round are half-to-even, so a reference must implement
 * the tie rule explicitly.
 *
 * Both quantisers use the straight-through estimator: their backward is the
 * identity, so no backward function exists here; callers pass the gradient
 * through unchanged. */
#ifndef BITLAB_QUANT_H
#define BITLAB_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define BL_QUANT_EPS 1e-5f /* floor of mean|W| and of max|x| (all-zero input) */

/* s = 1 / max(mean|w|, eps). The sum of |w| is taken in double, in blocks of
 * BL_ABSMEAN_BLOCK elements (eight lanes within a block), the block sums added
 * in order: a fixed order, so the same bits on any number of threads. */
float bl_wq_scale(const float *w, size_t n);
enum { BL_ABSMEAN_BLOCK = 4096 };
/* Σ|w| of one block (n <= BL_ABSMEAN_BLOCK), as bl_wq_scale takes it */
double bl_abs_sum_block(const float *w, size_t n);
/* s from the block sums, added in order */
float bl_wq_scale_of(const double *block_sums, size_t n_blocks, size_t n);

/* wq[i] = clamp(round(w[i]·s), −1, 1) / s; returns s. wq may alias w. */
float bl_wq(float *wq, const float *w, size_t n);

/* weff = (1−λ)·w + λ·wq(w), elementwise, no allocation; weff may alias w.
 * λ = 0 copies w, λ = 1 is pure ternary. */
void bl_weff(float *weff, const float *w, size_t n, float lambda);
/* the same with the scale s = bl_wq_scale(w) already known */
void bl_weff_scaled(float *weff, const float *w, size_t n, float lambda, float s);

/* Integer form: q[i] ∈ {−1, 0, 1} with w ≈ q/s; returns s. */
float bl_wq_int8(int8_t *q, const float *w, size_t n);

/* roundf (half away from zero) of v clamped to the integers [lo, hi], NaN to
 * lo, as fminf/fmaxf/roundf would; clamping first keeps the int conversion
 * defined (|v| <= 128), and v − trunc(v) is exact. Comparisons instead of
 * the calls, so that the loops using it vectorise. */
static inline float bl_round_clamp(float v, float lo, float hi) {
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    float t = (float)(int)v;
    return t + (fabsf(v - t) >= 0.5f ? copysignf(1.0f, v) : 0.0f);
}

/* max |x[i]|, as the largest sign-cleared bit pattern (NaN-free input) */
float bl_absmax(const float *x, int n);

/* Largest positive level Q of an activation width: 127 for 8 bits, 7 for 4
 * bits, 0 for 16 (quantisation off); −1 for any other width. */
int bl_actq_levels(int bits);

/* Per-row absmax quantisation of x[M, D]: s = Q / max(max|x_row|, eps),
 * xq = clamp(round(x·s), −Q−1, Q) / s. bits 16 copies x. xq may alias x;
 * scale[M] (may be NULL) receives s (1 when off). Fails only for a width
 * other than 4, 8 or 16. */
int bl_actq(float *xq, float *scale, const float *x, int M, int D, int bits, BlError *err);

/* The BitLinear input blended by λ like the weights (the Hugging Face 1.58-bit
 * fine-tuning recipe): xq = (1−λ)·x + λ·actq(x) = x + λ·(actq(x) − x), in
 * that order of float operations. λ = 1 is bl_actq bit for bit, λ = 0 copies
 * x; bits 16 copies x at any λ. scale as bl_actq (actq's s, not the blend's).
 * λ must be in [0, 1] (callers check it). */
int bl_actq_blend(float *xq, float *scale, const float *x, int M, int D, int bits, float lambda,
                  BlError *err);

#endif
