/* student.h - the trainable state of the BitNet b1.58 student on a frozen
 * model: per layer and block linear a LoRA stack (+ optional SubLN weight),
 * an optional post-attention RMSNorm weight per layer, λ, the activation
 * width, and one AdamW state per trainable tensor.
 *
 * The student never copies W: its BitLinears (train/device_student.h)
 * reference the model's weights and materialise Weff in backend memory. Teacher mode is the model
 * itself (nn/forward.h), so switching allocates nothing.
 *
 * Trainable tensors are listed in `params` (with `opt` beside them) in a fixed
 * order: per layer, per present linear kind: newest A, newest B, dense ΔW,
 * SubLN weight; then the layer's post-attention norm weight. The list is
 * rebuilt whenever an adapter is added. */
#ifndef BITLAB_STUDENT_H
#define BITLAB_STUDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "ops/adamw.h"
#include "train/lora.h"

typedef struct {
    float lambda;        /* 0 = teacher precision … 1 = ternary */
    int act_bits;        /* 8, 4 or 16 (off) */
    /* λ blends the BitLinear inputs too (BlStepParams.lambda_acts): what the
     * last training step used, checkpointed; evaluation below λ = 1 follows it */
    bool lambda_acts;
    bool subln;          /* RMSNorm inside every BitLinear before actq */
    bool post_attn_norm; /* RMSNorm on o_proj's output before the residual add */
    bool dense;          /* a trainable dense ΔW on every BitLinear (baseline) */
} BlStudentConfig;

/* Matrix kinds of the per-kind gradient norms: the linear kinds, then the
 * norm weights (SubLN of any linear and the post-attention norm). */
#define BL_GRAD_KIND_NORM BL_LIN_KINDS
#define BL_GRAD_KINDS (BL_LIN_KINDS + 1)

typedef struct {
    BlLoraStack lora;
    float *subln, *dsubln; /* [in] or NULL */
} BlStudentLinear;

typedef struct BlStudent {
    const BlModel *model;
    BlStudentConfig cfg;
    BlStudentLinear *lin;        /* [n_layers · BL_LIN_KINDS]; lora.out == 0 where absent */
    float *post_norm, *dpost_norm; /* [n_layers · dim] or NULL */
    int n_params;
    BlParamRef *params;  /* trainable tensors and their gradients */
    BlAdamWState *opt;   /* [n_params] */
    int *param_layer;    /* [n_params] */
    int *param_kind;     /* [n_params] BlLinearKind or BL_GRAD_KIND_NORM */
} BlStudent;

typedef struct {
    size_t frozen_weights;     /* the model's weights (shared with the teacher) */
    size_t adapters_frozen;    /* A, B of the older adapters */
    size_t adapters_trainable; /* newest A, B, dense ΔW, norm weights */
    size_t dense;              /* the dense ΔW alone (part of adapters_trainable;
                                * its gradient and moments are in grads, optimizer) */
    size_t grads;              /* their gradients */
    size_t optimizer;          /* AdamW moments */
} BlStudentMemory;

/* No adapter yet (ΔW = 0); SubLN / post-attention weights start at 1. */
int bl_build_student(BlStudent *s, const BlModel *m, const BlStudentConfig *cfg, BlError *err);
void bl_free_student(BlStudent *s);

/* Pushes a rank-r adapter (B = 0) on every BitLinear, freezing the previous
 * one, with fresh optimizer state for it. Linear i (layer-major, kind order)
 * draws A from seed + i. On failure (out of memory) the stacks may differ in
 * depth: the student is only fit for bl_free_student. */
int bl_student_add_adapter(BlStudent *s, int r, float alpha, uint64_t seed, BlError *err);
/* Rotation: add_adapter, then every optimizer state starts afresh. The
 * student's outputs are unchanged (the new B is 0). */
int bl_student_rotate(BlStudent *s, int r, float alpha, uint64_t seed, BlError *err);

bool bl_student_has(const BlStudent *s, int l, BlLinearKind kind);
/* The stack of the first present linear: adapters are added student-wide,
 * so its depth and ranks stand for every linear's (NULL: no linear). */
const BlLoraStack *bl_student_first_stack(const BlStudent *s);
/* Adapters on every BitLinear (the newest trains, the older are frozen). */
int bl_student_n_adapters(const BlStudent *s);
BlStudentLinear *bl_student_linear(BlStudent *s, int l, BlLinearKind kind);

void bl_student_zero_grad(BlStudent *s);
void bl_student_memory(const BlStudent *s, BlStudentMemory *out);

#endif
