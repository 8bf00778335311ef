/* lora.h - the stack of low-rank adapters on one frozen linear W [out, in]:
 * ΔW = Σ_i (α_i/r_i)·B_i·A_i (+ an optional dense ΔW, the seed's baseline).
 *
 * Only the newest adapter is trainable; adding one freezes the others (their
 * gradient buffers are released). A dense ΔW, when enabled, is trainable too.
 * Gradients are accumulated (+=) so micro-batches sum; the caller zeroes them
 * (bl_lora_zero_grad) once per optimizer step.
 *
 * Initialisation (as PEFT's default): A ~ kaiming-uniform with a = √5, i.e.
 * U(−1/√in, 1/√in), and B = 0, so a fresh adapter leaves the model unchanged.
 * The draw is deterministic in the seed (splitmix64, independent of the libc). */
#ifndef BITLAB_LORA_H
#define BITLAB_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    int r;
    float alpha, scale; /* scale = α/r */
    float *A, *B;       /* [r, in], [out, r] */
    float *dA, *dB;     /* gradients; NULL once frozen */
} BlLoraAdapter;

typedef struct {
    int out, in;
    int n;                /* adapters in the stack; ad[n−1] is the trainable one */
    BlLoraAdapter *ad;
    float *dense, *ddense; /* optional dense ΔW [out, in] and its gradient, or NULL */
} BlLoraStack;

/* An empty stack for a [out, in] linear (nothing allocated). */
void bl_lora_init(BlLoraStack *s, int out, int in);
void bl_lora_free(BlLoraStack *s);

/* Pushes a rank-r adapter (A random from seed, B = 0, zeroed gradients) and
 * freezes the previous one. */
int bl_lora_add_adapter(BlLoraStack *s, int r, float alpha, uint64_t seed, BlError *err);

/* Adds a trainable dense ΔW = 0 with its gradient. */
int bl_lora_enable_dense(BlLoraStack *s, BlError *err);

/* Zeroes the trainable gradients. */
void bl_lora_zero_grad(BlLoraStack *s);

/* dst[out, in] = w + ΔW: one sgemm per adapter. dst may equal w (in place). */
void bl_lora_merge(float *dst, const float *w, const BlLoraStack *s);

/* Floats of scratch bl_lora_backward needs for M rows (M·r of the newest). */
size_t bl_lora_scratch_floats(const BlLoraStack *s, int M);

/* Gradients of y = x·ΔWᵀ given dy [M, out] and the layer's (quantised) input
 * x [M, in], through low-rank products only (a dense dΔW is never formed):
 *   dB += scale·dyᵀ·(x·Aᵀ),  dA += scale·(dy·B)ᵀ·x,  ddense += dyᵀ·x. */
void bl_lora_backward(BlLoraStack *s, const float *dy, const float *x, int M, float *scratch);

#endif
