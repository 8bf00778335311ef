/* relation_loss.h - BitDistill's attention-relation distillation (MiniLM-v2
 * style, arXiv 2510.13998): the student's Q–Q, K–K and V–V relations at one
 * layer pulled towards the teacher's, composed from be->gemm and
 * be->relation_kl so it runs on every backend.
 *
 * Definition. At the chosen layer, for each X in {q, k, v} (the attention
 * inputs as the attention op sees them: q and k after RoPE, v as is; q has
 * n_heads heads, k and v n_kv_heads heads, head dim hd), per sequence b and
 * head h, for each selected row i:
 *   R_X[i, j] = softmax_j( X_i · X_j / sqrt(hd) ) over the window j in
 *               [doc_start(i), i] (causal, within the row's document in a
 *               packed batch, j < lens[b]);
 *   rel = mean over X in {q, k, v} of
 *         (1 / (heads_X · n_sel)) Σ_h Σ_{selected i} KL(R^T_X[i] ‖ R^S_X[i])
 * (teacher T, student S). Selected rows: the hidden-loss rows of the
 * trainer's row rule (trainer.h). The gradient flows to the student's X
 * only; the teacher's states are constants.
 *
 * Why post-RoPE: these are the very vectors whose dot products the attention
 * takes, so the relation of q and k is the structure of the attention scores
 * (positions included) and not of a projection the attention never sees.
 * Why causal windows: row i of the attention never looks at j > i, nor across
 * a document boundary of a packed row, so a relation over those pairs would
 * train the student on structure that cannot reach its outputs, and a packed
 * row would leak one document into the loss of another. */
#ifndef BITLAB_RELATION_LOSS_H
#define BITLAB_RELATION_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

/* One of q, k, v at the layer: rows r = b·T + t of ld floats (backend
 * memory), head h at columns [h·hd, (h + 1)·hd). */
typedef struct {
    const float *s;  /* the student's states */
    const float *t;  /* the teacher's */
    float *ds;       /* += grad_weight·drel/ds, or NULL (no gradient) */
    int heads, ld;
} BlRelationInput;

/* Floats of scratch bl_relation_loss needs: both relation-logit matrices
 * of every head of one sequence, 2·max_heads·T². */
size_t bl_relation_scratch_floats(int max_heads, int T);

/* rel as defined above over B sequences of T rows; sel [B·T] (backend) the
 * selected rows, h_sel the same on the host (counts n_sel, skips sequences
 * without one); lo [B·T] (backend) the packed batch's doc_start, or NULL.
 * Accumulates grad_weight·drel/dX into in[x].ds. scratch: at least
 * bl_relation_scratch_floats(max heads, T) floats (backend). Returns 0 with
 * no gradient when no row is selected, NAN on a device failure. */
double bl_relation_loss(const BlBackend *be, const BlRelationInput in[3], int B, int T, int hd,
                        const uint8_t *sel, const uint8_t *h_sel, const int *lo,
                        float grad_weight, float *scratch);

#endif
