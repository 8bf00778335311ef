/* student_eval.h - the one evaluation module: the teacher and the student as
 * inference models on any backend, and what experiments measure with them
 * (greedy answers, whole-sequence logits, next-token statistics, perplexity,
 * teacher–student top-1 / top-5 agreement), for the CLI and Lua alike.
 *
 * The teacher is the model's frozen weights in backend memory; the student
 * is a BlDeviceStudent sharing them (train/device_student.h), run by the
 * inference forward (nn/forward.h) and the KV-cache decoder (nn/generate.h)
 * with a BlStudentHook whose linears are THE BitLinear (bl_bitlinear_apply)
 * and whose post-attention norm is the student's: so student answers are the
 * argmax of the student's forward over the growing sequence, on the CPU or
 * on CUDA. λ and the activation width are explicit arguments (a
 * BlStudentMode); the student's own cfg values (bl_student_mode) are the
 * default, and `bitlab eval` passes λ = 1. Nothing here changes the host
 * student. */
#ifndef BITLAB_STUDENT_EVAL_H
#define BITLAB_STUDENT_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/backend.h"
#include "core/error.h"
#include "data/dataset.h"
#include "model/model.h"
#include "nn/generate.h"
#include "train/student.h"

/* Default Weff cache budget: 2 GiB holds every Weff of a model up to ~500M
 * linear weights (SmolLM2-135M: 425 MB), i.e. one more fp32 copy of its
 * weights in backend memory. */
#define BL_STUDENT_WEFF_CACHE_MAX ((size_t)2 << 30)

/* What the student runs at: λ in [0, 1], activations 4, 8 or 16 bits, and
 * whether λ blends the activations too (BlStepParams.lambda_acts; a no-op
 * at λ = 1, where evaluation runs by default). */
typedef struct {
    float lambda;
    int act_bits;
    bool lambda_acts;
} BlStudentMode;

/* The student's own cfg values: what callers pass by default. lambda_acts
 * is what it was trained with (checkpointed), so a checkpoint evaluated at
 * λ < 1 (generate --lambda) sees its activations as training did. */
BlStudentMode bl_student_mode(const BlStudent *st);

// ----------------------------------------------------------------------------
// the runner: teacher and student on one backend, for many calls

/* The teacher of m (st == NULL) or of st->model and the student st at mode,
 * on be, for many sequences and generations. The weights are uploaded once
 * (CUDA: bf16, BlDeviceModel); the student's Weff of every linear is formed
 * once at open when all fit in weff_cache_max bytes of backend memory, else
 * per linear call into a scratch of the largest (slower, same values; at
 * λ = 1 with 8- or 4-bit activations uncached linears take the backend's
 * integer path). The runner uses the student as it is at open: changing its
 * adapters afterwards needs a new runner. */
typedef struct BlEvalRunner BlEvalRunner;
int bl_eval_runner_open(BlEvalRunner **out, const BlBackend *be, const BlModel *m,
                        BlStudent *st, BlStudentMode mode, size_t weff_cache_max, BlError *err);
void bl_eval_runner_close(BlEvalRunner *r);
/* The runner holds a student (opened with st != NULL). */
bool bl_eval_runner_has_student(const BlEvalRunner *r);

/* logits[n·V] (host) of one sequence ids[n] through the teacher or (student)
 * the student. */
int bl_eval_runner_logits(BlEvalRunner *r, bool student, const int *ids, int n, float *logits,
                          BlError *err);
/* bl_eval_runner_logits, and (last_hidden != NULL) the last block's output
 * [n, dim] (before the final norm) into last_hidden. */
int bl_eval_runner_forward(BlEvalRunner *r, bool student, const int *ids, int n, float *logits,
                           float *last_hidden, BlError *err);
/* Greedy continuation (bl_generate_greedy's contract: stops before a stop
 * token; cb may be NULL; out, n_out may be NULL) by the teacher or the
 * student. */
int bl_eval_runner_generate(BlEvalRunner *r, bool student, const int *prompt, int n_prompt,
                            int max_new, BlTokenCallback cb, void *user, int *out, int *n_out,
                            BlError *err);
/* One sequence: argmax[n] (may be NULL) receives each row's top-1; for rows
 * t with rowmask[t] != 0 (NULL = all) and t + 1 < n, *nll_sum accumulates
 * −log p(ids[t+1]) and *count the rows. */
int bl_eval_runner_sequence(BlEvalRunner *r, bool student, const int *ids, int n,
                            const uint8_t *rowmask, int *argmax, double *nll_sum, long *count,
                            BlError *err);

// ----------------------------------------------------------------------------
// held-out data

/* Which models bl_eval_dataset runs (teacher, student or both) and whether a
 * non-finite score fails the call (else it is summed as it is). */
enum { BL_EVAL_TEACHER = 1, BL_EVAL_STUDENT = 2, BL_EVAL_BOTH = 3, BL_EVAL_FINITE = 4 };

/* Top-k agreement's k: the teacher's top-1 token counts when it is among
 * the student's BL_EVAL_TOPK most likely tokens (ranked by logit, ties by
 * the lower token id, as bl_argmax breaks them). It moves long before top-1
 * does: a student that ranks the teacher's choice 2nd..5th scores here. */
#define BL_EVAL_TOPK 5

/* Agreement by position: top-1 agreement over the rows whose position in
 * their example (row t predicts token t+1) is below each cut. Early
 * positions have little context, so a student learns them first. */
#define BL_EVAL_N_POS 2
extern const int bl_eval_pos_cuts[BL_EVAL_N_POS]; /* {8, 32} */

/* Sums over the scored rows (row t of an example scored when token t+1 is a
 * target), accumulated in double. KL(T‖S) at τ = 1 and the agreements only
 * when both models ran. */
typedef struct {
    int examples;       /* evaluated */
    int truncated;      /* of them, cut to seq */
    long long tokens;   /* tokens fed (each model) */
    long long rows;     /* scored rows */
    double nll_teacher, nll_student, kl; /* sums, nats */
    long long agree;    /* rows with the same top-1 */
    long long agree_topk; /* rows whose teacher top-1 is in the student's top BL_EVAL_TOPK */
    long long rows_pos[BL_EVAL_N_POS];  /* scored rows at positions < bl_eval_pos_cuts[i] */
    long long agree_pos[BL_EVAL_N_POS]; /* of them, with the same top-1 */
} BlEvalSums;

/* The first n_examples examples of d (capped at d->n), each cut to seq
 * tokens (0: uncut; examples of < 2 tokens are counted, not scored), through
 * the models of `what` (BL_EVAL_* flags), added into *s. progress (may be
 * NULL) gets one line per example. */
int bl_eval_dataset(BlEvalRunner *r, int what, const BlDataset *d, int n_examples, int seq,
                    FILE *progress, BlEvalSums *s, BlError *err);

/* The teacher's side of the scored rows of a held-out set, computed once so
 * that later evaluations run only the student. The student's LM head is the
 * teacher's own (unquantised, unadapted, no bias), so with h_S the student's
 * final-normed state, z_S(v) = h_S·W_v and
 *   Σ_v p_T(v)·log p_S(v) = h_S·m_T − logZ_S,  m_T = Σ_v p_T(v)·W_v,
 * and KL(T‖S) = Σ p_T log p_T − h_S·m_T + logZ_S over the full vocabulary,
 * exact up to float rounding (no top-K truncation). Per row: m_T (dim fp32),
 * Σ p_T log p_T and the teacher's NLL (double), its top-1 (the top-1 / top-5
 * agreements need only that): 4·dim + 20 bytes (SmolLM2-135M, dim 576:
 * 2324 bytes per scored token). The identity needs the lm_head product in
 * fp32 as the host holds W: the CPU backend (CUDA rounds W to bf16). */
typedef struct {
    int dim;
    long long rows, cap;
    float *m;        /* [rows, dim] m_T */
    double *negent;  /* [rows] Σ_v p_T log p_T */
    double *nll;     /* [rows] −log p_T(next) */
    int32_t *top;    /* [rows] argmax p_T */
} BlEvalTeacherRows;
void bl_eval_teacher_rows_free(BlEvalTeacherRows *tc);
/* Room for rows rows (tc->dim set). */
int bl_eval_teacher_rows_reserve(BlEvalTeacherRows *tc, long long rows, BlError *err);

/* bl_eval_dataset(BL_EVAL_BOTH | BL_EVAL_FINITE) through the cache: fill:
 * both models run, the sums are the direct ones and tc receives the
 * teacher's rows; else only the student runs (with its last hidden state)
 * and the teacher's side comes from tc, whose row count must match. */
int bl_eval_dataset_teacher_cached(BlEvalRunner *r, const BlDataset *d, int n_examples, int seq,
                                   FILE *progress, BlEvalTeacherRows *tc, bool fill,
                                   BlEvalSums *s, BlError *err);

/* exp(mean NLL) over the target rows of d's first n_examples examples of the
 * teacher of m (st == NULL) or the student st at mode, on be; NAN when no
 * row is scored. *rows (may be NULL) receives the row count. */
int bl_eval_perplexity(const BlBackend *be, const BlModel *m, BlStudent *st, BlStudentMode mode,
                       const BlDataset *d, int n_examples, double *ppl, long long *rows,
                       BlError *err);
/* Fraction of those rows where the teacher and the student st (at mode)
 * agree on the top-1 next token; NAN when none. */
int bl_eval_agreement(const BlBackend *be, BlStudent *st, BlStudentMode mode, const BlDataset *d,
                      int n_examples, double *agreement, long long *rows, BlError *err);

// ----------------------------------------------------------------------------
// one-shot forms (a runner opened and closed per call)

/* Greedy continuation of the teacher of m (st == NULL) or the student st at
 * mode, on be, with the default Weff cache budget (see the runner). */
int bl_eval_generate(const BlBackend *be, const BlModel *m, BlStudent *st, BlStudentMode mode,
                     const int *prompt, int n_prompt, int max_new, BlTokenCallback cb,
                     void *user, int *out, int *n_out, BlError *err);

/* The student's greedy continuation with an explicit Weff cache budget:
 * out[max_new] receives the tokens, *n_out their count. */
int bl_student_generate_greedy(const BlBackend *be, BlStudent *st, BlStudentMode mode,
                               const int *prompt, int n_prompt, int max_new,
                               size_t weff_cache_max, int *out, int *n_out, BlError *err);

/* logits[n·V] of one sequence through the teacher of m (st == NULL) or the
 * student st at mode, on be. */
int bl_eval_logits(const BlBackend *be, const BlModel *m, BlStudent *st, BlStudentMode mode,
                   const int *ids, int n, float *logits, BlError *err);

/* bl_eval_runner_sequence of the teacher of m (st == NULL) or the student. */
int bl_eval_sequence(const BlBackend *be, const BlModel *m, BlStudent *st, BlStudentMode mode,
                     const int *ids, int n, const uint8_t *rowmask, int *argmax,
                     double *nll_sum, long *count, BlError *err);

/* Length of the common prefix of a[na] and b[nb]. */
int bl_common_prefix(const int *a, int na, const int *b, int nb);

#endif
