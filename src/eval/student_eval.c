/* student_eval.c - the teacher and the student as inference models on a
 * backend, and the evaluation loops over them (see student_eval.h). */
#include "eval/student_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device_model.h"
#include "nn/forward.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/parallel.h"
#include "ops/quant.h"
#include "train/device_student.h"

BlStudentMode bl_student_mode(const BlStudent *st) {
    return (BlStudentMode){.lambda = st->cfg.lambda, .act_bits = st->cfg.act_bits,
                           .lambda_acts = st->cfg.lambda_acts};
}

// ----------------------------------------------------------------------------
// the student's linears: a BlStudentHook over a BlDeviceStudent

/* y = actq(subln(x))·Weffᵀ + b (the input blended by λ with lambda_acts)
 * through bl_bitlinear_apply, in backend memory.
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
    if (bl_bitlinear_apply(sl->be, L, x, y, M, sl->mode.lambda, sl->mode.act_bits,
                           sl->mode.lambda_acts, sl->eps, fast, shared, sl->xq, NULL,
                           ready ? NULL : sl->weff, ready, &sl->err))
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
    return bl_eval_runner_forward(r, student, ids, n, logits, NULL, err);
}

int bl_eval_runner_forward(BlEvalRunner *r, bool student, const int *ids, int n, float *logits,
                           float *last_hidden, BlError *err) {
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
    float **hidden = NULL;
    int L = r->host->cfg.n_layers;
    if (last_hidden) {
        if (!(hidden = bl_calloc((size_t)L, sizeof *hidden, err))) return -1;
        hidden[L - 1] = last_hidden;
    }
    int rc = bl_forward(&r->fs, ids, &n, NULL, 1, n, logits, hidden, err);
    free(hidden);
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

/* The agreements of one row scored by both models at position pos: whether
 * the student's top-1 is the teacher's (same) and whether the teacher's
 * top-1 is among the student's top-k (topk). */
static void add_agreement(bool same, bool topk, int pos, BlEvalSums *s) {
    s->agree += same;
    s->agree_topk += topk;
    for (int i = 0; i < BL_EVAL_N_POS; i++)
        if (pos < bl_eval_pos_cuts[i]) {
            s->rows_pos[i]++;
            s->agree_pos[i] += same;
        }
}

/* Example i of d cut to seq tokens (seq <= 0: whole), counted in s; its
 * length. */
static int take_example(const BlDataset *d, int i, int seq, const int **ids, const uint8_t **tg,
                        BlEvalSums *s) {
    int len;
    *ids = bl_dataset_example(d, i, &len, tg);
    int n = seq > 0 && len > seq ? seq : len;
    s->truncated += len > n;
    s->examples++;
    s->tokens += n;
    return n;
}

/* Whether the sums are still finite; the message names example i and the
 * model whose logits are not. */
static int check_finite(const BlEvalSums *s, int i, BlError *err) {
    if (isfinite(s->nll_teacher + s->nll_student + s->kl)) return 0;
    return bl_fail(err, "eval: example %d: the %s's logits are not finite", i + 1,
                   isfinite(s->nll_teacher) ? "student" : "teacher");
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
        int top_t = bl_argmax(lt, V);
        add_agreement(top_t == bl_argmax(ls, V), in_top_k(ls, V, top_t, BL_EVAL_TOPK), pos, s);
    }
    s->rows++;
}

/* Per-example buffers, grown to the longest example seen: two [cap, V]
 * logit blocks (teacher, student) and, for the cached path, two [cap, D]
 * hidden-state blocks and cap row indices (D = 0: none). */
typedef struct {
    size_t cap;
    float *logits, *hidden;
    int *rows;
} EvalScratch;

static void free_scratch(EvalScratch *b) {
    free(b->logits);
    free(b->hidden);
    free(b->rows);
    memset(b, 0, sizeof *b);
}

static int reserve_scratch(EvalScratch *b, int n, int V, int D, BlError *err) {
    if ((size_t)n <= b->cap) return 0;
    free_scratch(b);
    b->cap = (size_t)n;
    b->logits = bl_malloc(sizeof(float) * b->cap * V * 2, err);
    if (!b->logits) return -1;
    if (D == 0) return 0;
    b->hidden = bl_malloc(sizeof(float) * b->cap * D * 2, err);
    b->rows = b->hidden ? bl_malloc(sizeof(int) * b->cap, err) : NULL;
    return b->rows ? 0 : -1;
}

int bl_eval_dataset(BlEvalRunner *r, int what, const BlDataset *d, int n_examples, int seq,
                    FILE *progress, BlEvalSums *s, BlError *err) {
    int V = r->host->cfg.vocab_size;
    bool teacher = what & BL_EVAL_TEACHER, student = what & BL_EVAL_STUDENT;
    if (!teacher && !student) return bl_fail(err, "eval: no model to run");
    if (d->model != r->host) return bl_fail(err, "eval: the data was tokenised for another model");
    int n_ex = n_examples < d->n ? n_examples : d->n;
    EvalScratch b = {0};
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_ex; i++) {
        const int *ids;
        const uint8_t *tg;
        int n = take_example(d, i, seq, &ids, &tg, s);
        if (n < 2) continue;
        if ((rc = reserve_scratch(&b, n, V, 0, err))) break;
        float *lt = b.logits, *ls = lt + b.cap * V;
        if ((teacher && (rc = bl_eval_runner_logits(r, false, ids, n, lt, err))) ||
            (student && (rc = bl_eval_runner_logits(r, true, ids, n, ls, err)))) {
            bl_fail_prefix(err, "eval: example %d", i + 1);
            break;
        }
        for (int t = 0; t + 1 < n; t++)
            if (tg[t + 1])
                score_row(teacher ? lt + (size_t)t * V : NULL, student ? ls + (size_t)t * V : NULL,
                          V, ids[t + 1], t, s);
        if ((what & BL_EVAL_FINITE) && (rc = check_finite(s, i, err))) break;
        if (progress) fprintf(progress, "eval: example %d/%d (%d tokens)\n", i + 1, n_ex, n);
    }
    free_scratch(&b);
    return rc;
}

// ----------------------------------------------------------------------------
// held-out data with the teacher's side computed once (BlEvalTeacherRows)

void bl_eval_teacher_rows_free(BlEvalTeacherRows *tc) {
    free(tc->m);
    free(tc->negent);
    free(tc->nll);
    free(tc->top);
    memset(tc, 0, sizeof *tc);
}

int bl_eval_teacher_rows_reserve(BlEvalTeacherRows *tc, long long rows, BlError *err) {
    if (rows <= tc->cap) return 0;
    long long cap = tc->cap ? tc->cap : 256;
    while (cap < rows) cap *= 2;
    float *m = realloc(tc->m, sizeof(float) * (size_t)cap * (size_t)tc->dim);
    if (m) tc->m = m;
    double *ne = realloc(tc->negent, sizeof(double) * (size_t)cap);
    if (ne) tc->negent = ne;
    double *nl = realloc(tc->nll, sizeof(double) * (size_t)cap);
    if (nl) tc->nll = nl;
    int32_t *tp = realloc(tc->top, sizeof(int32_t) * (size_t)cap);
    if (tp) tc->top = tp;
    if (!m || !ne || !nl || !tp)
        return bl_fail(err, "eval: out of memory for the teacher cache (%lld rows)", cap);
    tc->cap = cap;
    return 0;
}

/* The teacher's side of the k scored rows whose logits lt[k, V] hold, in
 * order, appended to tc: the rows are turned into p_T in place and
 * m = P_T·W (one [k, V]·[V, dim] product). */
static int teacher_rows_append(BlEvalTeacherRows *tc, const BlModel *m, float *lt, int k,
                               const int *next, BlError *err) {
    int V = m->cfg.vocab_size, D = m->cfg.dim;
    if (bl_eval_teacher_rows_reserve(tc, tc->rows + k, err)) return -1;
    for (int j = 0; j < k; j++) {
        float *row = lt + (size_t)j * V;
        double lz = log_sum_exp(row, V), ne = 0.0;
        long long i = tc->rows + j;
        tc->top[i] = bl_argmax(row, V);
        tc->nll[i] = lz - row[next[j]];
        for (int v = 0; v < V; v++) {
            double lp = (double)row[v] - lz, p = exp(lp);
            ne += p * lp;
            row[v] = (float)p;
        }
        tc->negent[i] = ne;
    }
    bl_gemm(false, false, k, D, V, 1.0f, lt, V, m->lm_head, D, 0.0f,
            tc->m + (size_t)tc->rows * D, D);
    tc->rows += k;
    return 0;
}

/* The student's side of one example's scored rows from the cache: row j of
 * the list (example row t[j], cached row row0 + j) gets its logZ_S, NLL_S,
 * h_S·m_T, top-1 and top-5 hits, each a function of j alone. */
typedef struct {
    const float *ls, *h;
    const int *ids, *t;
    const BlEvalTeacherRows *tc;
    long long row0;
    int V, D;
    double *lzs, *nll, *cross;
    uint8_t *same, *topk;
} CachedRows;

static void cached_rows(void *ctx, long j0, long j1) {
    CachedRows *c = ctx;
    for (long j = j0; j < j1; j++) {
        int t = c->t[j];
        const float *lsr = c->ls + (size_t)t * c->V, *hr = c->h + (size_t)t * c->D,
                    *mr = c->tc->m + (size_t)(c->row0 + j) * c->D;
        double lz = log_sum_exp(lsr, c->V), cross = 0.0;
        for (int k = 0; k < c->D; k++) cross += (double)hr[k] * mr[k];
        int top_t = c->tc->top[c->row0 + j];
        c->lzs[j] = lz;
        c->nll[j] = lz - lsr[c->ids[t + 1]];
        c->cross[j] = cross;
        c->same[j] = top_t == bl_argmax(lsr, c->V);
        c->topk[j] = in_top_k(lsr, c->V, top_t, BL_EVAL_TOPK);
    }
}

int bl_eval_dataset_teacher_cached(BlEvalRunner *r, const BlDataset *d, int n_examples, int seq,
                                   FILE *progress, BlEvalTeacherRows *tc, bool fill,
                                   BlEvalSums *s, BlError *err) {
    const BlModel *m = r->host;
    int V = m->cfg.vocab_size, D = m->cfg.dim;
    if (!r->has_student) return bl_fail(err, "eval: no student to run");
    if (d->model != m) return bl_fail(err, "eval: the data was tokenised for another model");
    if (fill) {
        bl_eval_teacher_rows_free(tc);
        tc->dim = D;
    } else if (tc->dim != D) {
        return bl_fail(err, "eval: the teacher cache holds rows of width %d, the model %d",
                       tc->dim, D);
    }
    int n_ex = n_examples < d->n ? n_examples : d->n;
    EvalScratch b = {0};
    long long row = 0; /* next cached row (reading) */
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_ex; i++) {
        const int *ids;
        const uint8_t *tg;
        int n = take_example(d, i, seq, &ids, &tg, s);
        if (n < 2 || (rc = reserve_scratch(&b, n, V, D, err))) continue;
        float *lt = b.logits, *ls = lt + b.cap * V, *hid = b.hidden;
        int *next = b.rows;
        if (fill) {
            if ((rc = bl_eval_runner_logits(r, false, ids, n, lt, err)) ||
                (rc = bl_eval_runner_logits(r, true, ids, n, ls, err))) {
                bl_fail_prefix(err, "eval: example %d", i + 1);
                break;
            }
            int k = 0;
            for (int t = 0; t + 1 < n; t++)
                if (tg[t + 1]) {
                    const float *rowt = lt + (size_t)t * V;
                    score_row(rowt, ls + (size_t)t * V, V, ids[t + 1], t, s);
                    /* row k ≤ t: its own logits were read before */
                    if (k != t) memmove(lt + (size_t)k * V, rowt, sizeof(float) * V);
                    next[k++] = ids[t + 1];
                }
            if (k && (rc = teacher_rows_append(tc, m, lt, k, next, err))) break;
        } else {
            float *h = hid + b.cap * D;
            if ((rc = bl_eval_runner_forward(r, true, ids, n, ls, hid, err))) {
                bl_fail_prefix(err, "eval: example %d", i + 1);
                break;
            }
            /* the student's final-normed state, as its lm_head sees it */
            bl_rmsnorm(h, NULL, hid, m->out_norm, n, D, m->cfg.norm_eps);
            int k = 0;
            for (int t = 0; t + 1 < n; t++)
                if (tg[t + 1]) next[k++] = t;
            if (row + k > tc->rows) {
                rc = bl_fail(err, "eval: the teacher cache holds %lld rows, the data has more",
                             tc->rows);
                break;
            }
            /* per-row results in scratch behind the hidden states (5 slots a row) */
            double *acc = (double *)(void *)lt; /* the teacher's logits are not used here */
            CachedRows c = {.ls = ls, .h = h, .ids = ids, .t = next, .tc = tc, .row0 = row,
                            .V = V, .D = D, .lzs = acc, .nll = acc + k, .cross = acc + 2 * k,
                            .same = (uint8_t *)(acc + 3 * k), .topk = (uint8_t *)(acc + 4 * k)};
            bl_parallel_for(k, (long)k * V * 4, cached_rows, &c);
            for (int j = 0; j < k; j++, row++) {
                s->nll_teacher += tc->nll[row];
                s->nll_student += c.nll[j];
                /* KL = Σ p_T log p_T − Σ p_T z_S + logZ_S, Σ p_T z_S = h_S·m_T */
                s->kl += tc->negent[row] - c.cross[j] + c.lzs[j];
                add_agreement(c.same[j], c.topk[j], next[j], s);
                s->rows++;
            }
        }
        if ((rc = check_finite(s, i, err))) break;
        if (progress)
            fprintf(progress, "eval: example %d/%d (%d tokens%s)\n", i + 1, n_ex, n,
                    fill ? "" : ", teacher cached");
    }
    if (rc == 0 && !fill && row != tc->rows)
        rc = bl_fail(err, "eval: the teacher cache holds %lld rows, the data %lld", tc->rows, row);
    free_scratch(&b);
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
