/* ref_step.h - the readable CPU reference of the trainer, for tests only
 * (llm.c's train_gpt2.c role): tests/c/test_device_step.c holds the trainer
 * (src/train/trainer.h) on the CPU backend against it. One
 * self-distillation step on the CPU: teacher forward (the frozen
 * model, nn/forward.h) → student forward (train_forward.h) → losses →
 * backward → non-finite guard → global clip → AdamW on every trainable
 * tensor of the student.
 *
 *   total = w_ce·CE + w_kl·KL(τ) + w_topk·TopK-KL(K, τ) + w_cos·(1 − cos) + w_mag·mag
 *
 * The row rule (every loss, every path): row (b, t) is selected when t + 1 <
 * lens[b] (the next token exists) and mask[b·T + t] != 0, mask NULL
 * selecting every such row. Token losses and hidden-state losses use the
 * same rows: the hidden state at t is what predicts token t + 1, and a
 * dataset's mask selects row t when token t + 1 is a target, so a batch
 * from a dataset and a stand-alone batch follow one rule. A term whose weight is 0 is
 * not computed (reported as 0). Logits are formed two sequences at a time,
 * so the step holds the teacher's [B·T, V] logits but only [2·T, V] of the
 * student's and of their gradient.
 *
 * Gradient accumulation: bl_ref_accumulate on each micro-batch (with
 * weight 1/n), then bl_ref_update; bl_ref_distill_step does both. Given the
 * same inputs and thread count the step is deterministic.
 *
 * The teacher's outputs of a micro-batch come from one of three places
 * (BlStepResult.teacher):
 *   computed  the teacher forward ran;
 *   cached    the micro-batch equals the one whose outputs the trainer still
 *             holds (same B, T, lens and tokens at the valid positions; the
 *             mask is not part of the key: the teacher's outputs do not
 *             depend on it), so the frozen teacher's logits and hidden states
 *             are reused. One slot: with gradient accumulation over different
 *             micro-batches each is computed (only a micro-batch equal to the
 *             one just before hits, e.g. one repeated micro-batch per step);
 *   trace     precomputed outputs (a BlTeacherProvider, e.g. a teacher
 *             trace, or bl_ref_accumulate_given): top-K ids and
 *             log-probabilities and optionally hidden states; no forward. The
 *             full KL cannot be served (no full logits), nor hidden terms
 *             without stored hidden states, nor another K or τ: refused. */
#ifndef BITLAB_REF_STEP_H
#define BITLAB_REF_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "nn/forward.h"
#include "ops/adamw.h"
#include "train/student.h"
#include "train/teacher_cache.h"
#include "train_forward.h"
#include "train/trainer.h"

typedef struct {
    float w_ce, w_kl, w_topk, w_cos, w_mag;
    float tau;            /* temperature of both KLs */
    int topk;             /* K of the top-K KL */
    const float *layer_w; /* [n_layers] hidden-loss weights, or NULL = all 1 */
} BlRefLossConfig;



typedef struct BlRefTrainer {
    const BlModel *model;
    BlStudent *student; /* not owned */
    BlRefLossConfig loss;
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
    int topk_K;         /* K the top-K buffers were built for, 0 = no top-K loss */
    /* the teacher cache: the micro-batch whose outputs teacher/t_hidden hold */
    bool teacher_cache; /* reuse them when a micro-batch repeats (default true) */
    BlBatchKey cache;
    /* precomputed teacher outputs: provider.fetch != NULL replaces the forward */
    BlTeacherProvider provider;
    int *g_ids;                   /* [B·T, provider K] the provider's buffers */
    float *g_logp, *g_other;      /* [B·T, provider K], [B·T] */
    const BlTeacherGiven *given;  /* during an accumulate from given outputs */
    const float **t_hid;          /* [n_layers] the teacher hidden states the losses read */
} BlRefTrainer;

typedef struct {
    BlStudentMemory student;
    size_t activations; /* saved by the student forward for the backward */
    size_t scratch;     /* one block's scratch, the teacher's forward state and
                         * logits, the teacher's hidden states, the loss chunks */
} BlRefMemory;

int bl_ref_build_trainer(BlRefTrainer *tr, BlStudent *st, int B, int T, const BlRefLossConfig *loss,
                     const BlOptConfig *opt, BlError *err);
void bl_ref_free_trainer(BlRefTrainer *tr);

/* Forward + losses + backward of one micro-batch; gradients accumulate with
 * the losses scaled by weight, and weight·(each loss) is added into acc. */
int bl_ref_accumulate(BlRefTrainer *tr, const int *tokens, const int *lens, const uint8_t *mask,
                          int B, int T, float weight, BlStepResult *acc, BlError *err);

/* The same with the teacher's outputs given (no forward); given->K must be
 * the trainer's K and given->tau its τ when w_topk != 0. */
int bl_ref_accumulate_given(BlRefTrainer *tr, const int *tokens, const int *lens,
                                const uint8_t *mask, int B, int T, float weight,
                                const BlTeacherGiven *given, BlStepResult *acc, BlError *err);

/* From now on the teacher's outputs come from p (copied; p->ctx must outlive
 * the trainer's use of it), or from the live teacher again with p == NULL.
 * Refused when p->K differs from the trainer's top-K K (when it has one). */
int bl_ref_set_teacher(BlRefTrainer *tr, const BlTeacherProvider *p, BlError *err);

/* Refuses (naming what is missing) a loss mix the provider cannot serve:
 * the full KL, hidden terms without hidden states, another K or τ for the
 * top-K KL. 0 with the live teacher. Every accumulate checks it too. */
int bl_ref_check_teacher(const BlRefTrainer *tr, BlError *err);

/* Gradient norms into res, then: non-finite → skip (count, zero the
 * gradients, weights and moments untouched); else clip, AdamW, zero. */
void bl_ref_update(BlRefTrainer *tr, BlStepResult *res);

/* n_micro micro-batches of B sequences each: tokens [n_micro·B·T], lens
 * [n_micro·B], mask [n_micro·B·T] or NULL; each weighted by its share of
 * the step's selected rows (the losses are means over all of them). */
int bl_ref_distill_step(BlRefTrainer *tr, const int *tokens, const int *lens, const uint8_t *mask,
                    int n_micro, int B, int T, BlStepResult *res, BlError *err);

void bl_ref_memory(const BlRefTrainer *tr, BlRefMemory *out);

#endif
