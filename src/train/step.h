/* step.h - one self-distillation step on the CPU: teacher forward (the frozen
 * model, nn/forward.h) → student forward (train_forward.h) → losses →
 * backward → non-finite guard → global clip → AdamW on every trainable
 * tensor of the student.
 *
 *   total = w_ce·CE + w_kl·KL(τ) + w_topk·TopK-KL(K, τ) + w_cos·(1 − cos) + w_mag·mag
 *
 * Token losses use logits rows (b, t) with mask[b·T + t] != 0 and t + 1 <
 * lens[b] (the next token exists); hidden losses rows with mask != 0 and
 * t < lens[b]; mask NULL selects every token. A term whose weight is 0 is
 * not computed (reported as 0). Logits are formed two sequences at a time,
 * so the step holds the teacher's [B·T, V] logits but only [2·T, V] of the
 * student's and of their gradient.
 *
 * Gradient accumulation: bl_trainer_accumulate on each micro-batch (with
 * weight 1/n), then bl_trainer_update; bl_distill_step does both. Given the
 * same inputs and thread count the step is deterministic. */
#ifndef BITLAB_STEP_H
#define BITLAB_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "nn/forward.h"
#include "train/adamw.h"
#include "train/student.h"
#include "train/train_forward.h"

typedef struct {
    float w_ce, w_kl, w_topk, w_cos, w_mag;
    float tau;            /* temperature of both KLs */
    int topk;             /* K of the top-K KL */
    const float *layer_w; /* [n_layers] hidden-loss weights, or NULL = all 1 */
} BlLossConfig;

typedef struct {
    BlAdamWConfig adamw;
    float max_grad_norm; /* <= 0: no clipping */
} BlOptConfig;

typedef struct {
    double ce, kl, topk, cos, mag, total;
    double grad_norm;                     /* global, before clipping */
    const double *block_grad_norm;        /* [n_layers], the trainer's, valid until its next update */
    double kind_grad_norm[BL_GRAD_KINDS]; /* per BlLinearKind, then the norm weights */
    bool skipped;                         /* non-finite gradient: nothing was updated */
} BlStepResult;

typedef struct BlTrainer {
    const BlModel *model;
    BlStudent *student; /* not owned */
    BlLossConfig loss;
    BlOptConfig opt;
    int B, T;           /* micro-batch capacity */
    BlForwardState teacher;
    BlTrainState train;
    float *t_hidden;    /* [n_layers, B·T, dim] teacher block outputs */
    float *slogits, *dlogits; /* [2, T, V] two sequences */
    int *topk_ids;      /* [2, T, K] */
    float *topk_logp;   /* [2, T, K] */
    int *targets;       /* [B·T] tokens, −1 at padding (loss rows) */
    uint8_t *tok_mask, *hid_mask; /* [B·T] */
    double *block_gn;   /* [n_layers] */
    long steps, skipped;
} BlTrainer;

typedef struct {
    BlStudentMemory student;
    size_t activations; /* saved by the student forward for the backward */
    size_t scratch;     /* one block's scratch, the teacher's forward state and
                         * logits, the teacher's hidden states, the loss chunks */
} BlTrainerMemory;

int bl_build_trainer(BlTrainer *tr, BlStudent *st, int B, int T, const BlLossConfig *loss,
                     const BlOptConfig *opt, BlError *err);
void bl_free_trainer(BlTrainer *tr);

/* Forward + losses + backward of one micro-batch; gradients accumulate with
 * the losses scaled by weight, and weight·(each loss) is added into acc. */
int bl_trainer_accumulate(BlTrainer *tr, const int *tokens, const int *lens, const uint8_t *mask,
                          int B, int T, float weight, BlStepResult *acc, BlError *err);

/* Gradient norms into res, then: non-finite → skip (count, zero the
 * gradients, weights and moments untouched); else clip, AdamW, zero. */
void bl_trainer_update(BlTrainer *tr, BlStepResult *res);

/* n_micro micro-batches of B sequences each: tokens [n_micro·B·T], lens
 * [n_micro·B], mask [n_micro·B·T] or NULL; each weighted 1/n_micro. */
int bl_distill_step(BlTrainer *tr, const int *tokens, const int *lens, const uint8_t *mask,
                    int n_micro, int B, int T, BlStepResult *res, BlError *err);

void bl_trainer_memory(const BlTrainer *tr, BlTrainerMemory *out);

typedef struct {
    int B, T, steps;
    double step_s_median, step_s_min;
    double tokens_per_s; /* B·T / median step */
    double last_total;   /* the loss of the last step (sanity) */
    BlTrainerMemory mem;
} BlStepBench;

/* The benchmark step: λ = 1, 8-bit activations, one LoRA r=16 α=32 on every
 * BitLinear, CE + KL(τ=2) + hidden cosine, AdamW(1e-4, 0.9, 0.95, 1e-8,
 * 0.01), clip 1; warmup + steps steps on pseudo-random full-length batches. */
int bl_bench_step(const BlModel *m, int B, int T, int warmup, int steps, BlStepBench *out,
                  BlError *err);

#endif
