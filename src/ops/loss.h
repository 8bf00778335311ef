/* loss.h - the distillation objectives on the student's outputs, each
 * returning its value (accumulated in double) and ACCUMULATING
 * grad_weight·dloss/dinput into the gradient buffer (NULL skips), so several
 * losses on the same logits sum into one buffer without a second [rows, V]
 * array. Teacher inputs are constants: no gradient flows to them.
 *
 * Token losses work on logits [B·T, V]. Row r = b·T + t predicts token
 * tokens[r + 1] and is selected when t + 1 < T, mask[r] != 0 (mask NULL =
 * every row; it must exclude padding and prompt rows as the caller wants) and
 * that next token is in [0, V); a loss is the mean over selected rows, and 0
 * (with no gradient) when none is. KL losses use the same rows as CE so that
 * every objective sees the same positions. */
#ifndef BITLAB_LOSS_H
#define BITLAB_LOSS_H

#include <stdint.h>

typedef struct {
    const int *tokens;    /* [B·T] token ids; invalid ids (e.g. −1) mark "no target" */
    const uint8_t *mask;  /* [B·T] 0/1 per logits row, or NULL */
    int B, T, V;
} BlLossRows;

#define BL_TOPK_MAX 256 /* largest K of the top-K KL */

/* Next-token cross-entropy. */
double bl_ce_loss(float *dlogits, float grad_weight, const float *logits, const BlLossRows *rows);

/* τ²·KL(softmax(t/τ) ‖ softmax(s/τ)), gradient w.r.t. the student logits s. */
double bl_kl_loss(float *dlogits, float grad_weight, const float *s, const float *t,
                  const BlLossRows *rows, float tau);

/* The teacher side of the top-K KL from full teacher logits [n, V]: per row
 * the K largest logits' ids (descending; ties to the lower id) and their
 * log-probabilities log softmax(t/τ). 1 ≤ K ≤ min(V, BL_TOPK_MAX). */
void bl_topk_logprobs(int *ids, float *logp, const float *t, int n, int V, int K, float tau);

/* Top-K KL with an "other" bucket, τ²-scaled: the teacher distribution
 * (p_1..p_K, p_o = 1 − Σp_k) from t_ids/t_logp [B·T, K] against the student's
 * (q_id1..q_idK, q_o = the rest of softmax(s/τ)). Teacher ids must be
 * distinct; 1 ≤ K ≤ min(V, BL_TOPK_MAX), else NAN is returned. */
double bl_topk_kl_loss(float *dlogits, float grad_weight, const float *s, const int *t_ids,
                       const float *t_logp, int K, const BlLossRows *rows, float tau);

/* Hidden-state alignment over n_layers layers of [M, D] states, rows
 * selected by mask[M] (NULL = all; no next-token shift here: row m is
 * position m), layers weighted by layer_w (NULL = all 1):
 *   cos = Σ_l w_l · mean_rows(1 − cos(h_s, h_t)) / Σ_l w_l          (returned)
 *   mag = Σ_l w_l · mean_rows((log‖h_s‖ − log‖h_t‖)²) / Σ_l w_l     (into *mag)
 * dhs[l] (NULL array or entry skips) accumulate w_cos·dcos + w_mag·dmag. */
double bl_hidden_loss(float *const *dhs, float w_cos, float w_mag, const float *const *hs,
                      const float *const *ht, const float *layer_w, int n_layers,
                      const uint8_t *mask, int M, int D, double *mag);

/* Attention-relation KL (MiniLM-v2 / BitDistill, arXiv 2510.13998) on n
 * relation-logit matrices [T, T] of one sequence (row i, column j; the
 * matrices of its heads back to back), the student's s and the teacher's t.
 * Row i reads the window j in [lo[i], i] (lo NULL: [0, i]): causal, and
 * within the row's document in a packed batch. Per selected row (sel[i] !=
 * 0): R(x)[i, ·] = softmax of x[i, ·] over the window, and
 *   returns Σ_matrices Σ_selected i KL(R(t)[i] ‖ R(s)[i])       (double)
 * while s is OVERWRITTEN with g·dKL/ds: g·(R(s) − R(t)) inside a selected
 * row's window, 0 everywhere else (so s can be fed straight to the GEMMs
 * of the score gradient). Softmaxes and the KL in double; lo[i] is read at
 * selected rows only. sel, lo: [T]. */
double bl_relation_kl(float *s, const float *t, int n, int T, const uint8_t *sel, const int *lo,
                      float g);

#endif
