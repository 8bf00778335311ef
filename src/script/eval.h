/* eval.h - what experiments measure besides the training losses: greedy
 * decoding in student mode, and per-sequence next-token statistics (NLL and
 * argmax) of the teacher or the student, from which perplexity and
 * teacher–student top-1 agreement follow.
 *
 * Student decoding has no KV cache: each new token reruns the student's
 * training forward on the whole sequence (B = 1). That is quadratic in the
 * length but needs no second forward implementation, and the tokens are by
 * construction the argmax of exactly the model that is trained. */
#ifndef BITLAB_EVAL_H
#define BITLAB_EVAL_H

#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "train/student.h"

/* Greedy continuation in student mode, stopping before any of the model's
 * stop tokens; out[max_new] receives the tokens, *n_out their count. */
int bl_student_generate_greedy(BlStudent *st, const int *prompt, int n_prompt, int max_new,
                               int *out, int *n_out, BlError *err);

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
