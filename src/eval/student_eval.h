/* eval.h - what experiments measure besides the training losses: greedy
 * decoding in student mode, and per-sequence next-token statistics (NLL and
 * argmax) of the teacher or the student, from which perplexity and
 * teacher–student top-1 agreement follow.
 *
 * Student decoding is the teacher's KV-cache decoder (nn/generate.h) with
 * the student's linears and post-attention norm hooked in, computed with the
 * training forward's ops, so its tokens are the argmax of the training
 * forward over the growing sequence. A runner keeps those hooks (and the
 * materialised Weff) for many calls: greedy answers and whole-sequence
 * logits through the inference forward (nn/forward.h). */
#ifndef BITLAB_EVAL_H
#define BITLAB_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "train/student.h"

/* Default Weff cache budget: 2 GiB holds every Weff of a model up to ~500M
 * linear weights (SmolLM2-135M: 425 MB), i.e. one more copy of its weights. */
#define BL_STUDENT_WEFF_CACHE_MAX ((size_t)2 << 30)

/* Greedy continuation in student mode, stopping before any of the model's
 * stop tokens; out[max_new] receives the tokens, *n_out their count. When
 * every linear's Weff fits in weff_cache_max bytes they are materialised once
 * for the call (that much extra memory); otherwise each is rebuilt per decoder
 * step into a scratch of the largest linear (slower, same tokens). */
int bl_student_generate_greedy(BlStudent *st, const int *prompt, int n_prompt, int max_new,
                               size_t weff_cache_max, int *out, int *n_out, BlError *err);

/* The student as an inference model for many sequences and generations of
 * up to `capacity` tokens each: every Weff is materialised once at open when
 * all fit in weff_cache_max bytes (else each is rebuilt per linear call into
 * a scratch of the largest). It uses the student as it is at open: changing
 * its adapters or λ afterwards needs a new runner. */
typedef struct BlStudentRunner BlStudentRunner;
int bl_student_runner_open(BlStudentRunner **out, BlStudent *st, int capacity,
                           size_t weff_cache_max, BlError *err);
void bl_student_runner_close(BlStudentRunner *r);
/* logits[n·V] of ids[n]: the inference forward with the student's linears
 * and post-attention norm hooked in (the same ops as the training forward). */
int bl_student_runner_logits(BlStudentRunner *r, const int *ids, int n, float *logits,
                             BlError *err);
/* Greedy continuation as bl_student_generate_greedy. */
int bl_student_runner_generate(BlStudentRunner *r, const int *prompt, int n_prompt, int max_new,
                               int *out, int *n_out, BlError *err);

/* logits[n·V] of one sequence ids[n] through the teacher (st == NULL, the
 * inference forward) or the student (its training forward, at st's λ and
 * activation width). */
int bl_eval_logits(const BlModel *m, BlStudent *st, const int *ids, int n, float *logits,
                   BlError *err);

/* One sequence ids[n] through the teacher (st == NULL) or the student.
 * argmax[n] (may be NULL) receives each row's top-1 prediction; for rows t
 * with rowmask[t] != 0 (NULL = all) and t + 1 < n, *nll_sum accumulates
 * −log p(ids[t+1]) and *count the rows. */
int bl_eval_sequence(const BlModel *m, BlStudent *st, const int *ids, int n,
                     const uint8_t *rowmask, int *argmax, double *nll_sum, long *count,
                     BlError *err);

/* Length of the common prefix of a[na] and b[nb]. */
int bl_common_prefix(const int *a, int na, const int *b, int nb);

#endif
