/* eval.c - student greedy decoding and sequence statistics (see eval.h). */
#include "eval/student_eval.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "nn/forward.h"
#include "nn/generate.h"
#include "ops/ops.h"
#include "train/train_forward.h"

/* The student's linears for the KV-cache decoder: y = actq(subln(x))·Weffᵀ + b
 * with the same ops as the training forward, so the tokens are those of the
 * uncached student. Weff depends only on the student, not on the tokens, so
 * it is materialised once per call for every linear when all of them fit in
 * the cache budget, else once per linear per decoder step into one scratch. */
typedef struct {
    BlStudent *st;
    float *xq;      /* [capacity, widest input] */
    float *weff;    /* every Weff (off != NULL) or one linear's scratch */
    size_t *off;    /* [n_layers · BL_LIN_KINDS] offsets into weff, or NULL */
} StudentLinears;

static void student_linear(void *ctx, int l, BlLinearKind kind, const float *x, float *y, int M) {
    StudentLinears *sl = ctx;
    BlBitLinear L = bl_student_bitlinear(sl->st, l, kind);
    bl_train_bitlinear_input(sl->xq, NULL, x, &L, M);
    float *w = sl->weff;
    if (sl->off) w += sl->off[(size_t)l * BL_LIN_KINDS + kind];
    else bl_bitlinear_weff(w, &L);
    bl_matmul(y, sl->xq, w, L.b, M, L.out, L.in);
}

static int build_linears(StudentLinears *sl, BlStudent *st, int capacity, size_t cache_max,
                         BlError *err) {
    const BlModel *m = st->model;
    const BlConfig *c = &m->cfg;
    size_t nl = (size_t)c->n_layers * BL_LIN_KINDS, total = 0, wmax = 0, maxin = 0;
    *sl = (StudentLinears){.st = st};
    if (!(sl->off = bl_calloc(nl, sizeof *sl->off, err))) return -1;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &m->layers[l].lin[k];
            if (!w->w) continue;
            size_t n = (size_t)w->out * w->in;
            sl->off[(size_t)l * BL_LIN_KINDS + k] = total;
            total += n;
            wmax = n > wmax ? n : wmax;
            maxin = (size_t)w->in > maxin ? (size_t)w->in : maxin;
        }
    if (total * sizeof(float) > cache_max) {
        free(sl->off);
        sl->off = NULL;
    }
    if (!(sl->xq = bl_malloc(sizeof(float) * (size_t)capacity * maxin, err)) ||
        !(sl->weff = bl_malloc(sizeof(float) * (sl->off ? total : wmax), err)))
        return -1;
    for (int l = 0; sl->off && l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlBitLinear L = bl_student_bitlinear(st, l, k);
            bl_bitlinear_weff(sl->weff + sl->off[(size_t)l * BL_LIN_KINDS + k], &L);
        }
    return 0;
}

static void free_linears(StudentLinears *sl) {
    free(sl->xq);
    free(sl->weff);
    free(sl->off);
}

struct BlStudentRunner {
    BlStudent *st;
    int capacity;
    StudentLinears sl;
    BlStudentHook hook;
    BlForwardState fs; /* whole-sequence forward, built on first use */
    bool have_fs;
};

int bl_student_runner_open(BlStudentRunner **out, BlStudent *st, int capacity,
                           size_t weff_cache_max, BlError *err) {
    *out = NULL;
    if (capacity <= 0) return bl_fail(err, "student runner: capacity %d", capacity);
    BlStudentRunner *r = bl_calloc(1, sizeof *r, err);
    if (!r) return -1;
    r->st = st;
    r->capacity = capacity;
    if (build_linears(&r->sl, st, capacity, weff_cache_max, err)) {
        bl_student_runner_close(r);
        return -1;
    }
    r->hook = (BlStudentHook){.linear = student_linear, .ctx = &r->sl,
                              .post_attn_norm = st->post_norm};
    *out = r;
    return 0;
}

void bl_student_runner_close(BlStudentRunner *r) {
    if (!r) return;
    free_linears(&r->sl);
    if (r->have_fs) bl_free_forward_state(&r->fs);
    free(r);
}

int bl_student_runner_logits(BlStudentRunner *r, const int *ids, int n, float *logits,
                             BlError *err) {
    const BlModel *m = r->st->model;
    if (n <= 0 || n > r->capacity)
        return bl_fail(err, "student forward: %d tokens (capacity %d)", n, r->capacity);
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= m->cfg.vocab_size)
            return bl_fail(err, "student forward: token %d outside 0..%d", ids[t],
                           m->cfg.vocab_size - 1);
    if (!r->have_fs) {
        if (bl_build_forward_state(&r->fs, m, bl_backend_cpu(), 1, r->capacity, false, err))
            return -1;
        r->have_fs = true;
        r->fs.student = &r->hook;
    }
    return bl_forward(&r->fs, ids, &n, 1, n, logits, NULL, err);
}

int bl_student_runner_generate(BlStudentRunner *r, const int *prompt, int n_prompt, int max_new,
                               int *out, int *n_out, BlError *err) {
    *n_out = 0;
    if (n_prompt <= 0) return bl_fail(err, "student generate: empty prompt");
    if (max_new <= 0) return 0;
    if (n_prompt + max_new > r->capacity)
        return bl_fail(err, "student generate: %d + %d tokens exceed the capacity %d", n_prompt,
                       max_new, r->capacity);
    if (bl_generate_greedy_hooked(r->st->model, bl_backend_cpu(), &r->hook, prompt, n_prompt,
                                  max_new, NULL, NULL, out, n_out, err))
        return bl_fail_prefix(err, "student generate");
    return 0;
}

int bl_student_generate_greedy(BlStudent *st, const int *prompt, int n_prompt, int max_new,
                               size_t weff_cache_max, int *out, int *n_out, BlError *err) {
    *n_out = 0;
    if (n_prompt <= 0) return bl_fail(err, "student generate: empty prompt");
    if (max_new <= 0) return 0;
    BlStudentRunner *r;
    if (bl_student_runner_open(&r, st, n_prompt + max_new, weff_cache_max, err))
        return bl_fail_prefix(err, "student generate");
    int rc = bl_student_runner_generate(r, prompt, n_prompt, max_new, out, n_out, err);
    bl_student_runner_close(r);
    return rc;
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

int bl_eval_logits(const BlModel *m, BlStudent *st, const int *ids, int n, float *logits,
                   BlError *err) {
    int V = m->cfg.vocab_size;
    if (n <= 0) return bl_fail(err, "eval: empty sequence");
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= V) return bl_fail(err, "eval: token %d outside 0..%d", ids[t], V - 1);
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
    return rc;
}

int bl_eval_sequence(const BlModel *m, BlStudent *st, const int *ids, int n,
                     const uint8_t *rowmask, int *argmax, double *nll_sum, long *count,
                     BlError *err) {
    int V = m->cfg.vocab_size;
    if (n <= 0) return bl_fail(err, "eval: empty sequence");
    float *logits = bl_malloc(sizeof(float) * (size_t)n * V, err);
    if (!logits) return -1;
    int rc = bl_eval_logits(m, st, ids, n, logits, err);
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
