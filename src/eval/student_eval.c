/* student_eval.c - the teacher and the student as inference models on a
 * backend, and the evaluation loops over them (see student_eval.h). */
#include "eval/student_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device_model.h"
#include "nn/forward.h"
#include "ops/quant.h"
#include "train/device_student.h"

BlStudentMode bl_student_mode(const BlStudent *st) {
    return (BlStudentMode){.lambda = st->cfg.lambda, .act_bits = st->cfg.act_bits};
}

// ----------------------------------------------------------------------------
// the student's linears: a BlStudentHook over a BlDeviceStudent

/* y = actq(subln(x))·Weffᵀ + b through bl_bitlinear_apply, in backend memory.
 * Weff depends only on the student and λ, not on the tokens, so it is formed
 * once for every linear when all of them fit in the cache budget, else per
 * call into one scratch (or, on the integer fast path, not at all). */
typedef struct {
    const BlBackend *be;
    const BlDeviceStudent *ds;
    BlStudentMode mode;
    bool fast;            /* uncached linears take the integer path */
    float eps;
    int maxin;            /* widest linear input */
    float *xq;            /* [rows, maxin] quantised input */
    int rows;
    const float *xq_of;   /* the input xq holds the quantisation of, or NULL */
    float *weff;          /* every Weff (off != NULL) or one linear's scratch */
    size_t *off;          /* [n_layers · BL_LIN_KINDS] offsets into weff, or NULL */
    int rc;               /* the first failure of a linear, in err */
    BlError err;
} Linears;

static void student_linear(void *ctx, int l, BlLinearKind kind, const float *x, float *y, int M) {
    Linears *sl = ctx;
    if (sl->rc) return;
    const BlDevLinear *L = bl_dev_linear(sl->ds, l, kind);
    const float *ready = sl->off ? sl->weff + sl->off[(size_t)l * BL_LIN_KINDS + kind] : NULL;
    bool fast = !ready && sl->fast;
    /* k, v reuse q's quantised input, up gate's (the same x, unchanged since) */
    bool shared = (kind == BL_LIN_K || kind == BL_LIN_V || kind == BL_LIN_UP) && x == sl->xq_of;
    if (M > sl->rows) {
        sl->rc = bl_fail(&sl->err, "student linear: %d rows exceed the scratch of %d", M, sl->rows);
        return;
    }
    if (bl_bitlinear_apply(sl->be, L, x, y, M, sl->mode.lambda, sl->mode.act_bits, sl->eps, fast,
                           shared, sl->xq, NULL, ready ? NULL : sl->weff, ready, &sl->err))
        sl->rc = -1;
    sl->xq_of = fast || L->subln ? NULL : x;
}

static void free_linears(Linears *sl) {
    if (sl->be) {
        if (sl->xq) sl->be->free(sl->xq);
        if (sl->weff) sl->be->free(sl->weff);
    }
    free(sl->off);
    memset(sl, 0, sizeof *sl);
}

static int build_linears(Linears *sl, const BlDeviceStudent *ds, BlStudentMode mode,
                         size_t cache_max, BlError *err) {
    const BlBackend *be = ds->be;
    const BlConfig *c = &ds->m->cfg;
    size_t nl = (size_t)c->n_layers * BL_LIN_KINDS, total = 0, wmax = 0;
    *sl = (Linears){.be = be, .ds = ds, .mode = mode, .eps = c->norm_eps,
                    .fast = bl_bitlinear_fast_path(mode.lambda, mode.act_bits)};
    if (!(sl->off = bl_calloc(nl, sizeof *sl->off, err))) return -1;
    for (size_t i = 0; i < nl; i++) {
        const BlDevLinear *L = &ds->lin[i];
        if (!L->out) continue;
        size_t n = (size_t)L->out * L->in;
        sl->off[i] = total;
        total += n;
        wmax = n > wmax ? n : wmax;
        sl->maxin = L->in > sl->maxin ? L->in : sl->maxin;
    }
    if (total * sizeof(float) > cache_max) {
        free(sl->off);
        sl->off = NULL;
    }
    if (!(sl->weff = be->alloc(sizeof(float) * (sl->off ? total : wmax ? wmax : 1), err))) {
        free_linears(sl);
        return bl_fail_prefix(err, "student Weff on %s", be->name);
    }
    for (size_t i = 0; sl->off && i < nl; i++)
        if (ds->lin[i].out)
            bl_bitlinear_weff_of(be, &ds->lin[i], sl->weff + sl->off[i], mode.lambda);
    return 0;
}

/* xq scratch for M rows */
static int linears_reserve(Linears *sl, int M, BlError *err) {
    if (M <= sl->rows) return 0;
    if (sl->xq) sl->be->free(sl->xq);
    sl->xq = sl->be->alloc(sizeof(float) * (size_t)M * (sl->maxin ? sl->maxin : 1), err);
    sl->rows = sl->xq ? M : 0;
    sl->xq_of = NULL;
    return sl->xq ? 0 : -1;
}

// ----------------------------------------------------------------------------
// the runner

struct BlEvalRunner {
    const BlBackend *be;
    const BlModel *host;
    bool has_student;
    BlDeviceStudent ds;  /* with a student: its weights are the teacher's too */
    BlDeviceModel dm;    /* without: the teacher's weights */
    const BlModel *dev;  /* ds.m or &dm.model */
    Linears sl;
    BlStudentHook hook;
    BlForwardState fs;   /* whole-sequence forward, built (and grown) on use */
    bool have_fs;
};

int bl_eval_runner_open(BlEvalRunner **out, const BlBackend *be, const BlModel *m,
                        BlStudent *st, BlStudentMode mode, size_t weff_cache_max, BlError *err) {
    *out = NULL;
    if (st && m && st->model != m) return bl_fail(err, "eval: the student is of another model");
    if (st) {
        if (!(mode.lambda >= 0.0f && mode.lambda <= 1.0f))
            return bl_fail(err, "eval: lambda %g is outside 0..1", (double)mode.lambda);
        if (bl_actq_levels(mode.act_bits) < 0)
            return bl_fail(err, "eval: activation width %d is not 4, 8 or 16", mode.act_bits);
    }
    BlEvalRunner *r = bl_calloc(1, sizeof *r, err);
    if (!r) return -1;
    r->be = be;
    r->host = st ? st->model : m;
    if (st) {
        if (bl_build_device_student(&r->ds, be, st, false, err)) {
            free(r);
            return -1;
        }
        r->has_student = true;
        r->dev = r->ds.m;
        if (build_linears(&r->sl, &r->ds, mode, weff_cache_max, err)) {
            bl_eval_runner_close(r);
            return -1;
        }
        r->hook = (BlStudentHook){.linear = student_linear, .ctx = &r->sl,
                                  .post_attn_norm = (const float *const *)r->ds.post_norm};
    } else {
        if (bl_device_model_build(&r->dm, m, be, err)) {
            free(r);
            return bl_fail_prefix(err, "the model on %s", be->name);
        }
        r->dev = &r->dm.model;
    }
    *out = r;
    return 0;
}

void bl_eval_runner_close(BlEvalRunner *r) {
    if (!r) return;
    if (r->have_fs) bl_free_forward_state(&r->fs);
    free_linears(&r->sl);
    if (r->has_student) bl_free_device_student(&r->ds);
    else if (r->dm.be) bl_device_model_free(&r->dm);
    free(r);
}

bool bl_eval_runner_has_student(const BlEvalRunner *r) { return r->has_student; }

/* The hook of the call (NULL: the teacher) with scratch for M rows. */
static int hook_for(BlEvalRunner *r, bool student, int M, const BlStudentHook **hook,
                    BlError *err) {
    *hook = NULL;
    if (!student) return 0;
    if (!r->has_student) return bl_fail(err, "eval: no student to run");
    if (linears_reserve(&r->sl, M, err)) return bl_fail_prefix(err, "student scratch");
    r->sl.rc = 0;
    *hook = &r->hook;
    return 0;
}

/* A failed student linear's error, after a forward. */
static int hook_status(BlEvalRunner *r, const BlStudentHook *hook, int rc, BlError *err) {
    if (hook && r->sl.rc) {
        if (err) *err = r->sl.err;
        r->sl.rc = 0;
        return -1;
    }
    return rc;
}

int bl_eval_runner_logits(BlEvalRunner *r, bool student, const int *ids, int n, float *logits,
                          BlError *err) {
    int V = r->host->cfg.vocab_size;
    if (n <= 0) return bl_fail(err, "eval: empty sequence");
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return bl_fail(err, "eval: token %d outside 0..%d", ids[t], V - 1);
    const BlStudentHook *hook;
    if (hook_for(r, student, n, &hook, err)) return -1;
    if (r->have_fs && r->fs.T < n) {
        bl_free_forward_state(&r->fs);
        r->have_fs = false;
    }
    if (!r->have_fs) {
        if (bl_build_forward_state(&r->fs, r->dev, r->be, 1, n, false, err)) return -1;
        r->have_fs = true;
    }
    r->fs.student = hook;
    int rc = bl_forward(&r->fs, ids, &n, 1, n, logits, NULL, err);
    return hook_status(r, hook, rc, err);
}

int bl_eval_runner_generate(BlEvalRunner *r, bool student, const int *prompt, int n_prompt,
                            int max_new, BlTokenCallback cb, void *user, int *out, int *n_out,
                            BlError *err) {
    if (n_out) *n_out = 0;
    if (n_prompt <= 0) return bl_fail(err, "generate: empty prompt");
    if (max_new <= 0) return 0;
    const BlStudentHook *hook;
    if (hook_for(r, student, n_prompt, &hook, err)) return -1;
    int rc = bl_generate_greedy_hooked(r->dev, r->be, hook, prompt, n_prompt, max_new, cb, user,
                                       out, n_out, err);
    rc = hook_status(r, hook, rc, err);
    if (rc && student) bl_fail_prefix(err, "student generate");
    return rc;
}

/* NLL (when want_nll) and argmax of one row of logits. */
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

int bl_eval_runner_sequence(BlEvalRunner *r, bool student, const int *ids, int n,
                            const uint8_t *rowmask, int *argmax, double *nll_sum, long *count,
                            BlError *err) {
    int V = r->host->cfg.vocab_size;
    if (n <= 0) return bl_fail(err, "eval: empty sequence");
    float *logits = bl_malloc(sizeof(float) * (size_t)n * V, err);
    if (!logits) return -1;
    int rc = bl_eval_runner_logits(r, student, ids, n, logits, err);
    for (int t = 0; rc == 0 && t < n; t++) {
        int want = t + 1 < n && (!rowmask || rowmask[t]);
        row_stats(logits + (size_t)t * V, V, want ? ids[t + 1] : 0, want,
                  argmax ? &argmax[t] : NULL, nll_sum, count);
    }
    free(logits);
    return rc;
}

// ----------------------------------------------------------------------------
// held-out data

/* log Σ exp(x) over x[n], in double */
static double log_sum_exp(const float *x, int n) {
    double mx = x[0];
    for (int v = 1; v < n; v++) mx = x[v] > mx ? x[v] : mx;
    double s = 0.0;
    for (int v = 0; v < n; v++) s += exp((double)x[v] - mx);
    return mx + log(s);
}

const int bl_eval_pos_cuts[BL_EVAL_N_POS] = {8, 32};

/* Whether token a is among the k largest of x[V], ranked by value and ties
 * by the lower index (bl_argmax's order, so k = 1 is argmax == a). Counting
 * the tokens ranked above a, with an early stop, needs no sort. */
static bool in_top_k(const float *x, int V, int a, int k) {
    float xa = x[a];
    int above = 0;
    for (int v = 0; v < V; v++)
        if ((x[v] > xa || (x[v] == xa && v < a)) && ++above >= k) return false;
    return true;
}

/* The agreements of one row scored by both models at position pos. */
static void agree_row(const float *lt, const float *ls, int V, int pos, BlEvalSums *s) {
    int top_t = bl_argmax(lt, V);
    bool same = top_t == bl_argmax(ls, V);
    s->agree += same;
    s->agree_topk += in_top_k(ls, V, top_t, BL_EVAL_TOPK);
    for (int i = 0; i < BL_EVAL_N_POS; i++)
        if (pos < bl_eval_pos_cuts[i]) {
            s->rows_pos[i]++;
            s->agree_pos[i] += same;
        }
}

/* One scored row at position pos: teacher logits lt and/or student logits
 * ls, the next token. KL(T‖S) = Σ p_T·(lt − ls) + logZ_S − logZ_T, since
 * Σ p_T = 1. */
static void score_row(const float *lt, const float *ls, int V, int next, int pos,
                      BlEvalSums *s) {
    double lzt = lt ? log_sum_exp(lt, V) : 0.0, lzs = ls ? log_sum_exp(ls, V) : 0.0;
    if (lt) s->nll_teacher += lzt - lt[next];
    if (ls) s->nll_student += lzs - ls[next];
    if (lt && ls) {
        double cross = 0.0;
        for (int v = 0; v < V; v++) cross += exp((double)lt[v] - lzt) * ((double)lt[v] - ls[v]);
        s->kl += cross + lzs - lzt;
        agree_row(lt, ls, V, pos, s);
    }
    s->rows++;
}

int bl_eval_dataset(BlEvalRunner *r, int what, const BlDataset *d, int n_examples, int seq,
                    FILE *progress, BlEvalSums *s, BlError *err) {
    int V = r->host->cfg.vocab_size;
    bool teacher = what & BL_EVAL_TEACHER, student = what & BL_EVAL_STUDENT;
    if (!teacher && !student) return bl_fail(err, "eval: no model to run");
    if (d->model != r->host) return bl_fail(err, "eval: the data was tokenised for another model");
    int n_ex = n_examples < d->n ? n_examples : d->n;
    float *lt = NULL;
    size_t cap = 0; /* rows lt (and ls after it) hold */
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_ex; i++) {
        int len;
        const uint8_t *tg;
        const int *ids = bl_dataset_example(d, i, &len, &tg);
        int n = seq > 0 && len > seq ? seq : len;
        s->truncated += len > n;
        s->examples++;
        s->tokens += n;
        if (n < 2) continue;
        if ((size_t)n > cap) {
            free(lt);
            cap = (size_t)n;
            if (!(lt = bl_malloc(sizeof(float) * cap * V * 2, err))) {
                rc = -1;
                break;
            }
        }
        float *ls = lt + cap * V;
        if ((teacher && (rc = bl_eval_runner_logits(r, false, ids, n, lt, err))) ||
            (student && (rc = bl_eval_runner_logits(r, true, ids, n, ls, err)))) {
            bl_fail_prefix(err, "eval: example %d", i + 1);
            break;
        }
        for (int t = 0; t + 1 < n; t++)
            if (tg[t + 1])
                score_row(teacher ? lt + (size_t)t * V : NULL, student ? ls + (size_t)t * V : NULL,
                          V, ids[t + 1], t, s);
        if ((what & BL_EVAL_FINITE) && !isfinite(s->nll_teacher + s->nll_student + s->kl)) {
            rc = bl_fail(err, "eval: example %d: the %s's logits are not finite", i + 1,
                         isfinite(s->nll_teacher) ? "student" : "teacher");
            break;
        }
        if (progress) fprintf(progress, "eval: example %d/%d (%d tokens)\n", i + 1, n_ex, n);
    }
    free(lt);
    return rc;
}

int bl_eval_perplexity(const BlBackend *be, const BlModel *m, BlStudent *st, BlStudentMode mode,
                       const BlDataset *d, int n_examples, double *ppl, long long *rows,
                       BlError *err) {
    BlEvalRunner *r;
    if (bl_eval_runner_open(&r, be, m, st, mode, BL_STUDENT_WEFF_CACHE_MAX, err)) return -1;
    BlEvalSums s = {0};
    int rc = bl_eval_dataset(r, st ? BL_EVAL_STUDENT : BL_EVAL_TEACHER, d, n_examples, 0, NULL,
                             &s, err);
    bl_eval_runner_close(r);
    if (rc) return -1;
    double nll = st ? s.nll_student : s.nll_teacher;
    *ppl = s.rows ? exp(nll / (double)s.rows) : NAN;
    if (rows) *rows = s.rows;
    return 0;
}

int bl_eval_agreement(const BlBackend *be, BlStudent *st, BlStudentMode mode, const BlDataset *d,
                      int n_examples, double *agreement, long long *rows, BlError *err) {
    BlEvalRunner *r;
    if (bl_eval_runner_open(&r, be, st->model, st, mode, BL_STUDENT_WEFF_CACHE_MAX, err))
        return -1;
    BlEvalSums s = {0};
    int rc = bl_eval_dataset(r, BL_EVAL_BOTH, d, n_examples, 0, NULL, &s, err);
    bl_eval_runner_close(r);
    if (rc) return -1;
    *agreement = s.rows ? (double)s.agree / (double)s.rows : NAN;
    if (rows) *rows = s.rows;
    return 0;
}

// ----------------------------------------------------------------------------
// one-shot forms

int bl_student_generate_greedy(const BlBackend *be, BlStudent *st, BlStudentMode mode,
                               const int *prompt, int n_prompt, int max_new,
                               size_t weff_cache_max, int *out, int *n_out, BlError *err) {
    *n_out = 0;
    if (n_prompt <= 0) return bl_fail(err, "student generate: empty prompt");
    if (max_new <= 0) return 0;
    BlEvalRunner *r;
    if (bl_eval_runner_open(&r, be, st->model, st, mode, weff_cache_max, err))
        return bl_fail_prefix(err, "student generate");
    int rc = bl_eval_runner_generate(r, true, prompt, n_prompt, max_new, NULL, NULL, out, n_out,
                                     err);
    bl_eval_runner_close(r);
    return rc;
}

int bl_eval_generate(const BlBackend *be, const BlModel *m, BlStudent *st, BlStudentMode mode,
                     const int *prompt, int n_prompt, int max_new, BlTokenCallback cb,
                     void *user, int *out, int *n_out, BlError *err) {
    if (n_out) *n_out = 0;
    BlEvalRunner *r;
    if (bl_eval_runner_open(&r, be, m, st, mode, BL_STUDENT_WEFF_CACHE_MAX, err)) return -1;
    int rc = bl_eval_runner_generate(r, st != NULL, prompt, n_prompt, max_new, cb, user, out,
                                     n_out, err);
    bl_eval_runner_close(r);
    return rc;
}

int bl_eval_logits(const BlBackend *be, const BlModel *m, BlStudent *st, BlStudentMode mode,
                   const int *ids, int n, float *logits, BlError *err) {
    BlEvalRunner *r;
    if (bl_eval_runner_open(&r, be, m, st, mode, BL_STUDENT_WEFF_CACHE_MAX, err)) return -1;
    int rc = bl_eval_runner_logits(r, st != NULL, ids, n, logits, err);
    bl_eval_runner_close(r);
    return rc;
}

int bl_eval_sequence(const BlBackend *be, const BlModel *m, BlStudent *st, BlStudentMode mode,
                     const int *ids, int n, const uint8_t *rowmask, int *argmax,
                     double *nll_sum, long *count, BlError *err) {
    BlEvalRunner *r;
    if (bl_eval_runner_open(&r, be, m, st, mode, BL_STUDENT_WEFF_CACHE_MAX, err)) return -1;
    int rc = bl_eval_runner_sequence(r, st != NULL, ids, n, rowmask, argmax, nll_sum, count, err);
    bl_eval_runner_close(r);
    return rc;
}

int bl_common_prefix(const int *a, int na, const int *b, int nb) {
    int i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}
