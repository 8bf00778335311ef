/* eval.c - student greedy decoding and sequence statistics (see eval.h). */
#include "script/eval.h"

#include <math.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "nn/forward.h"
#include "nn/generate.h"
#include "train/train_forward.h"

static int is_stop(const BlModel *m, int id) {
    for (int i = 0; i < m->n_stop_tokens; i++)
        if (m->stop_tokens[i] == id) return 1;
    return 0;
}

int bl_student_generate_greedy(BlStudent *st, const int *prompt, int n_prompt, int max_new,
                               int *out, int *n_out, BlError *err) {
    const BlModel *m = st->model;
    int V = m->cfg.vocab_size, cap = n_prompt + max_new;
    *n_out = 0;
    if (n_prompt <= 0) return bl_fail(err, "student generate: empty prompt");
    BlTrainState ts;
    if (bl_build_train_state(&ts, st, 1, cap, err)) return -1;
    int *seq = bl_malloc(sizeof(int) * cap, err);
    float *logits = seq ? bl_malloc(sizeof(float) * V, err) : NULL;
    int rc = logits ? 0 : -1;
    for (int i = 0; rc == 0 && i < n_prompt; i++) seq[i] = prompt[i];
    int n = n_prompt;
    while (rc == 0 && n < cap) {
        if ((rc = bl_train_forward(&ts, st, seq, &n, 1, n, err))) break;
        bl_train_logits(&ts, n - 1, 1, logits);
        int tok = bl_argmax(logits, V);
        if (is_stop(m, tok)) break;
        out[(*n_out)++] = seq[n++] = tok;
    }
    free(logits);
    free(seq);
    bl_free_train_state(&ts);
    return rc ? bl_fail_prefix(err, "student generate") : 0;
}

/* NLL and argmax of one row of logits. */
static void row_stats(const float *lg, int V, int next, int want_nll, int *argmax,
                      double *nll_sum, long *count) {
    if (argmax) *argmax = bl_argmax(lg, V);
    if (!want_nll) return;
    float mx = lg[0];
    for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
    double s = 0.0;
    for (int v = 0; v < V; v++) s += exp((double)lg[v] - mx);
    *nll_sum += log(s) + mx - lg[next];
    (*count)++;
}

int bl_eval_sequence(const BlModel *m, BlStudent *st, const int *ids, int n,
                     const uint8_t *rowmask, int *argmax, double *nll_sum, long *count,
                     BlError *err) {
    int V = m->cfg.vocab_size;
    if (n <= 0) return bl_fail(err, "eval: empty sequence");
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= V) return bl_fail(err, "eval: token %d outside 0..%d", ids[t], V - 1);
    float *logits = bl_malloc(sizeof(float) * (size_t)n * V, err);
    if (!logits) return -1;
    int rc = 0;
    if (st) {
        BlTrainState ts;
        rc = bl_build_train_state(&ts, st, 1, n, err);
        if (rc == 0 && (rc = bl_train_forward(&ts, st, ids, &n, 1, n, err)) == 0)
            bl_train_logits(&ts, 0, n, logits);
        bl_free_train_state(&ts); /* zeroed by a failed build: freeing is safe */
    } else {
        BlForwardState fs;
        rc = bl_build_forward_state(&fs, m, bl_backend_cpu(), 1, n, false, err);
        if (rc == 0) {
            rc = bl_forward(&fs, ids, &n, 1, n, logits, NULL, err);
            bl_free_forward_state(&fs);
        }
    }
    for (int t = 0; rc == 0 && t < n; t++) {
        int want = t + 1 < n && (!rowmask || rowmask[t]);
        row_stats(logits + (size_t)t * V, V, want ? ids[t + 1] : 0, want,
                  argmax ? &argmax[t] : NULL, nll_sum, count);
    }
    free(logits);
    return rc;
}

int bl_common_prefix(const int *a, int na, const int *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}
