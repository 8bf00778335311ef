/* loss.c - cross-entropy, KL, top-K KL, hidden cosine and attention-relation
 * losses (see loss.h).
 * Softmaxes shift by the row maximum, exponentiate in float (bl_expf) and sum
 * in double.
 *
 * The token losses work row by row on the worker pool (ops/parallel.h):
 * each selected row's value goes into its own slot and its gradient into its
 * own dlogits row, and the values are summed in row order afterwards, so the
 * results are the same bits as one thread's, for any thread count. */
/* The bl_expf loops (core/vmath.h) vectorise only without -ftrapping-math:
 * gcc will not if-convert its clamps while a comparison may raise FE_INVALID.
 * No result depends on the floating-point exception flags, and the vector
 * loops do the same float operations as the scalar ones, bit for bit. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "ops/loss.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/vmath.h"
#include "ops/parallel.h"

// ----------------------------------------------------------------------------
// row selection and log-sum-exp

static int selected(const BlLossRows *r, int b, int t) {
    if (t + 1 >= r->T) return 0;
    size_t i = (size_t)b * r->T + t;
    int nxt = r->tokens[i + 1];
    return (!r->mask || r->mask[i]) && nxt >= 0 && nxt < r->V;
}

/* Selected rows, counted first so every loss can normalise as it goes. */
static int count_rows(const BlLossRows *r) {
    int n = 0;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++) n += selected(r, b, t);
    return n;
}

/* The selected rows (b·T + t) in order, n of them; NULL when the list
 * cannot be allocated (the callers then run row by row on one thread). */
static int *selected_rows(const BlLossRows *r, int n) {
    int *rows = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!rows) return NULL;
    int i = 0;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++)
            if (selected(r, b, t)) rows[i++] = b * r->T + t;
    return rows;
}

/* fn(ctx, i, scratch) for i in [0, n), spread over threads in contiguous
 * ranges; each thread gets `scratch` floats of its own (NULL when they cannot
 * be allocated: fn must cope). */
typedef void (*RowFn)(void *ctx, int i, float *scratch);

typedef struct {
    RowFn fn;
    void *ctx;
    size_t scratch;
} RowJob;

static void run_rows(void *arg, long i0, long i1) {
    const RowJob *j = arg;
    float *scr = j->scratch ? malloc(sizeof(float) * j->scratch) : NULL;
    for (long i = i0; i < i1; i++) j->fn(j->ctx, (int)i, scr);
    free(scr);
}

static void parallel_rows(int n, RowFn fn, void *ctx, size_t scratch) {
    RowJob j = {.fn = fn, .ctx = ctx, .scratch = scratch};
    bl_parallel_for(n, LONG_MAX, run_rows, &j); /* a row is a vocabulary: always worth it */
}

/* The softmaxes exponentiate with bl_expf (float, vectorised) in blocks of
 * BLK on the stack and add the block into LANES double partial sums: the
 * fixed lane pattern vectorises without reassociation flags, and the order of
 * the additions, so the result, depends only on V. */
enum { BLK = 256, LANES = 8 };

static void add_lanes(double *acc, const float *e, int n) {
    int k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += e[k + l];
    for (int l = 0; k + l < n; l++) acc[l] += e[k + l];
}

static double fold_lanes(const double *acc) {
    double s = 0.0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

static float row_max(const float *x, int V) {
    float mx = x[0];
    for (int j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* e[k] = exp((x[k] − m)·rt), the one float expression of every softmax here */
static void exp_block(float *e, const float *x, int n, float m, float rt) {
    for (int k = 0; k < n; k++) e[k] = bl_expf((x[k] - m) * rt);
}

/* S = Σ_j exp((x_j − mx)/τ) with mx = max_j x_j, so log Σ_j exp(x_j/τ) =
 * mx/τ + log S. With a cache of V floats the exponentials stay there for the
 * gradient loops; without, those recompute exp((x_j − mx)·(1/τ)) with the
 * same float expression: either way their softmax is exactly the one summed
 * here. */
static double sum_exp_cached(const float *x, int V, float tau, float *mx, float *cache) {
    float m = row_max(x, V), rt = 1.0f / tau, e[BLK];
    double acc[LANES] = {0};
    for (int j0 = 0; j0 < V; j0 += BLK) {
        int n = V - j0 < BLK ? V - j0 : BLK;
        float *eb = cache ? cache + j0 : e;
        exp_block(eb, x + j0, n, m, rt);
        add_lanes(acc, eb, n);
    }
    *mx = m;
    return fold_lanes(acc);
}

static double sum_exp(const float *x, int V, float tau, float *mx) {
    return sum_exp_cached(x, V, tau, mx, NULL);
}

/* the exponentials of x[j0 .. j0+n) as sum_exp_cached made them: from the
 * cache, else recomputed into e[BLK] */
static const float *exps(float *e, const float *cache, const float *x, int j0, int n, float m,
                         float rt) {
    if (cache) return cache + j0;
    exp_block(e, x + j0, n, m, rt);
    return e;
}

/* log Σ_j exp(x_j / τ) */
static double lse(const float *x, int V, float tau) {
    float mx;
    double s = sum_exp(x, V, tau, &mx);
    return (double)mx / tau + log(s);
}

// ----------------------------------------------------------------------------
// cross-entropy: −log softmax(z)[target]; dz = softmax(z) − onehot

typedef struct {
    float *dlogits;
    const float *s, *t;
    const BlLossRows *r;
    const int *rows;
    double *vals;
    const int *t_ids;    /* top-K KL: the teacher's ids and log-probabilities */
    const float *t_logp;
    int K;
    double g;
    float tau;
} TokenRows;

/* the row loss −log softmax(z)[y]; d += g·(softmax(z) − onehot(y)) */
static void ce_row(void *vctx, int i, float *cache) {
    const TokenRows *c = vctx;
    int V = c->r->V, row = c->rows[i], y = c->r->tokens[row + 1];
    const float *z = c->s + (size_t)row * V;
    float mx, e[BLK];
    double S = sum_exp_cached(z, V, 1.0f, &mx, c->dlogits ? cache : NULL);
    c->vals[i] = (double)mx + log(S) - z[y];
    if (!c->dlogits) return;
    float *d = c->dlogits + (size_t)row * V, gs = (float)(c->g / S); /* softmax_j = e_j / S */
    for (int j0 = 0; j0 < V; j0 += BLK) {
        int n = V - j0 < BLK ? V - j0 : BLK;
        const float *eb = exps(e, cache, z, j0, n, mx, 1.0f);
        for (int k = 0; k < n; k++) d[j0 + k] += gs * eb[k];
    }
    d[y] -= (float)c->g;
}

/* fn over the selected rows on threads (one thread, row by row, without the
 * row list), then their values summed in row order */
static double token_loss(TokenRows *c, int n, RowFn fn, size_t scratch) {
    double one, loss = 0.0;
    int *rows = selected_rows(c->r, n);
    double *vals = rows ? malloc(sizeof(double) * (size_t)n) : NULL;
    if (!vals) { /* the same rows and sums, serially */
        free(rows);
        float *scr = scratch ? malloc(sizeof(float) * scratch) : NULL;
        c->vals = &one;
        for (int b = 0; b < c->r->B; b++)
            for (int t = 0; t < c->r->T; t++) {
                if (!selected(c->r, b, t)) continue;
                int row = b * c->r->T + t;
                c->rows = &row;
                fn(c, 0, scr);
                loss += one;
            }
        free(scr);
        return loss;
    }
    c->rows = rows;
    c->vals = vals;
    parallel_rows(n, fn, c, scratch);
    for (int i = 0; i < n; i++) loss += vals[i];
    free(vals);
    free(rows);
    return loss;
}

double bl_ce_loss(float *dlogits, float grad_weight, const float *logits, const BlLossRows *r) {
    int n = count_rows(r);
    if (n == 0) return 0.0;
    TokenRows c = {.dlogits = dlogits, .s = logits, .r = r, .g = (double)grad_weight / n};
    return token_loss(&c, n, ce_row, (size_t)r->V) / n;
}

// ----------------------------------------------------------------------------
// KL: τ²·Σ p·(log p − log q); ds = τ·(q − p)

/* the row's Σ p·(log p − log q); d += g·(q − p). cache: 2V floats (es, et) */
static void kl_row(void *vctx, int i, float *cache) {
    const TokenRows *c = vctx;
    int V = c->r->V, row = c->rows[i];
    float tau = c->tau;
    const float *zs = c->s + (size_t)row * V, *zt = c->t + (size_t)row * V;
    float *d = c->dlogits ? c->dlogits + (size_t)row * V : NULL;
    float *cs = cache && d ? cache : NULL, *ct = cache ? cache + (d ? V : 0) : NULL;
    float ms, mt;
    double Ss = sum_exp_cached(zs, V, tau, &ms, cs), St = sum_exp_cached(zt, V, tau, &mt, ct);
    /* log p_j − log q_j = (zt_j − zs_j)/τ − c, in double (the float
     * difference is exact there); p_j = et_j / St, q_j = es_j / Ss */
    double cc = ((double)mt - ms) / tau + log(St) - log(Ss), rtd = 1.0 / tau;
    double acc[LANES] = {0};
    float rt = 1.0f / tau, gq = (float)(c->g / Ss), gp = (float)(c->g / St);
    float e1[BLK], e2[BLK];
    for (int j0 = 0; j0 < V; j0 += BLK) {
        int n = V - j0 < BLK ? V - j0 : BLK;
        const float *s0 = zs + j0, *t0 = zt + j0;
        const float *et = exps(e1, ct, zt, j0, n, mt, rt);
        if (d) {
            const float *es = exps(e2, cs, zs, j0, n, ms, rt);
            for (int k = 0; k < n; k++) d[j0 + k] += gq * es[k] - gp * et[k];
        }
        int k = 0;
        for (; k + LANES <= n; k += LANES)
            for (int l = 0; l < LANES; l++)
                acc[l] += et[k + l] * (((double)t0[k + l] - s0[k + l]) * rtd - cc);
        for (int l = 0; k + l < n; l++)
            acc[l] += et[k + l] * (((double)t0[k + l] - s0[k + l]) * rtd - cc);
    }
    c->vals[i] = fold_lanes(acc) / St;
}

double bl_kl_loss(float *dlogits, float grad_weight, const float *s, const float *t,
                  const BlLossRows *r, float tau) {
    int n = count_rows(r);
    if (n == 0) return 0.0;
    TokenRows c = {.dlogits = dlogits, .s = s, .t = t, .r = r, .tau = tau,
                   .g = (double)grad_weight * tau / n};
    return (double)tau * tau * token_loss(&c, n, kl_row, 2 * (size_t)r->V) / n;
}

// ----------------------------------------------------------------------------
// top-K KL

typedef struct {
    int *ids;
    float *logp;
    const float *t;
    int V, K;
    float tau;
} TopkRows;

static void topk_logprobs_row(void *vctx, int i, float *scratch) {
    (void)scratch;
    const TopkRows *c = vctx;
    int V = c->V, K = c->K;
    const float *z = c->t + (size_t)i * V;
    int *id = c->ids + (size_t)i * K;
    int have = 0; /* id[0..have) sorted by descending z, ties by ascending id */
    for (int j = 0; j < V; j++) {
        if (have == K && !(z[j] > z[id[K - 1]])) continue;
        int p = have < K ? have++ : K - 1;
        while (p > 0 && z[j] > z[id[p - 1]]) {
            id[p] = id[p - 1];
            p--;
        }
        id[p] = j;
    }
    double l = lse(z, V, c->tau);
    for (int k = 0; k < K; k++) c->logp[(size_t)i * K + k] = (float)(z[id[k]] / c->tau - l);
}

void bl_topk_logprobs(int *ids, float *logp, const float *t, int n, int V, int K, float tau) {
    TopkRows c = {.ids = ids, .logp = logp, .t = t, .V = V, .K = K, .tau = tau};
    parallel_rows(n, topk_logprobs_row, &c, 0);
}

/* log Σ_{j ∉ ids} exp(z_j/τ) by walking the sorted ids alongside j, so the
 * "other" mass stays exact even when the top-K hold nearly all of it (where
 * log(1 − Σq_k) would cancel). −INFINITY when the rest is empty. */
static double lse_rest(const float *z, int V, const int *sorted, int K, float tau) {
    float mx = -INFINITY;
    for (int j = 0, k = 0; j < V; j++) {
        if (k < K && sorted[k] == j) { k++; continue; }
        mx = z[j] > mx ? z[j] : mx;
    }
    if (mx == -INFINITY) return -INFINITY;
    double sum = 0.0;
    for (int j = 0, k = 0; j < V; j++) {
        if (k < K && sorted[k] == j) { k++; continue; }
        sum += exp(((double)z[j] - mx) / tau);
    }
    return (double)mx / tau + log(sum);
}

/* Row loss (unscaled KL) and, with d, d += g·dKL/dz·… where the gradient is
 * ds_j = τ·q_j·(P − p_c(j)/Q_c(j)) over the buckets c (K ids and "other"):
 * for an id, τ·(q_k·P − p_k); for the rest, τ·(q_j·P − p_o·q_j/Q_o). */
static double topk_row(float *d, double g, const float *z, const int *id, const float *lp, int K,
                       int V, float tau) {
    int sorted[BL_TOPK_MAX];
    double psum = 0.0;
    for (int k = 0; k < K; k++) {
        int v = id[k], p = k;
        while (p > 0 && sorted[p - 1] > v) {
            sorted[p] = sorted[p - 1];
            p--;
        }
        sorted[p] = v;
        psum += exp((double)lp[k]);
    }
    for (int k = 0; k < K; k++) /* ids must be distinct and in range */
        if (sorted[k] < 0 || sorted[k] >= V || (k > 0 && sorted[k] == sorted[k - 1])) return NAN;
    double la = lse(z, V, tau), lr = lse_rest(z, V, sorted, K, tau);
    /* p_o = 1 − Σp_k, zero when rounding pushes Σp_k to 1 or nothing is left */
    double po = (psum < 1.0 && lr > -INFINITY) ? 1.0 - psum : 0.0;
    double lpo = po > 0.0 ? log1p(-psum) : 0.0;
    double ptot = psum + po, kl = 0.0;
    for (int k = 0; k < K; k++) kl += exp((double)lp[k]) * (lp[k] - (z[id[k]] / tau - la));
    if (po > 0.0) kl += po * (lpo - (lr - la));
    if (!d) return kl;
    for (int j = 0, k = 0; j < V; j++) { /* the rest: q_j·P − p_o·q_j/Q_o */
        if (k < K && sorted[k] == j) { k++; continue; }
        double zj = z[j] / tau;
        double rest = po > 0.0 ? po * exp(zj - lr) : 0.0;
        d[j] += (float)(g * (exp(zj - la) * ptot - rest));
    }
    for (int k = 0; k < K; k++) /* the ids: q_k·P − p_k */
        d[id[k]] += (float)(g * (exp(z[id[k]] / tau - la) * ptot - exp((double)lp[k])));
    return kl;
}

static void topk_kl_row(void *vctx, int i, float *scratch) {
    (void)scratch;
    const TokenRows *c = vctx;
    int V = c->r->V, K = c->K;
    size_t row = (size_t)c->rows[i];
    c->vals[i] = topk_row(c->dlogits ? c->dlogits + row * V : NULL, c->g, c->s + row * V,
                          c->t_ids + row * K, c->t_logp + row * K, K, V, c->tau);
}

double bl_topk_kl_loss(float *dlogits, float grad_weight, const float *s, const int *t_ids,
                       const float *t_logp, int K, const BlLossRows *r, float tau) {
    if (K < 1 || K > BL_TOPK_MAX || K > r->V) return NAN;
    int n = count_rows(r);
    if (n == 0) return 0.0;
    TokenRows c = {.dlogits = dlogits, .s = s, .r = r, .tau = tau, .t_ids = t_ids,
                   .t_logp = t_logp, .K = K, .g = (double)grad_weight * tau / n};
    return (double)tau * tau * token_loss(&c, n, topk_kl_row, 0) / n;
}

// ----------------------------------------------------------------------------
// hidden cosine + magnitude:
// d(1 − cos)/da = cos·a/‖a‖² − b/(‖a‖‖b‖);  d(log‖a‖ − log‖b‖)²/da = 2·(log‖a‖ − log‖b‖)·a/‖a‖²

#define NORM_EPS 1e-8

double bl_hidden_loss(float *const *dhs, float w_cos, float w_mag, const float *const *hs,
                      const float *const *ht, const float *layer_w, int n_layers,
                      const uint8_t *mask, int M, int D, double *mag) {
    int n = 0;
    double wsum = 0.0, lcos = 0.0, lmag = 0.0;
    for (int m = 0; m < M; m++) n += !mask || mask[m];
    for (int l = 0; l < n_layers; l++) wsum += layer_w ? layer_w[l] : 1.0;
    if (mag) *mag = 0.0;
    if (n == 0 || wsum == 0.0) return 0.0;
    for (int l = 0; l < n_layers; l++) {
        double wl = (layer_w ? layer_w[l] : 1.0) / (n * wsum);
        float *dl = dhs ? dhs[l] : NULL;
        for (int m = 0; m < M; m++) {
            if (mask && !mask[m]) continue;
            const float *a = hs[l] + (size_t)m * D, *b = ht[l] + (size_t)m * D;
            double aa = 0.0, bb = 0.0, ab = 0.0;
            for (int i = 0; i < D; i++) {
                aa += (double)a[i] * a[i];
                bb += (double)b[i] * b[i];
                ab += (double)a[i] * b[i];
            }
            double na = fmax(sqrt(aa), NORM_EPS), nb = fmax(sqrt(bb), NORM_EPS);
            double cs = ab / (na * nb), dlog = log(na) - log(nb);
            lcos += wl * (1.0 - cs);
            lmag += wl * dlog * dlog;
            if (!dl) continue;
            /* the a/‖a‖² terms come from ‖a‖, constant below the eps floor */
            double ca = sqrt(aa) > NORM_EPS ? (w_cos * cs + 2.0 * w_mag * dlog) / (na * na) : 0.0;
            double cb = w_cos / (na * nb);
            float *d = dl + (size_t)m * D;
            for (int i = 0; i < D; i++) d[i] += (float)(wl * (ca * a[i] - cb * b[i]));
        }
    }
    if (mag) *mag = lmag;
    return lcos;
}

// ----------------------------------------------------------------------------
// attention-relation KL: per window row, Σ p·(log p − log q); ds = g·(q − p)

typedef struct {
    float *s;
    const float *t;
    const uint8_t *sel;
    const int *lo;
    double *vals; /* [n·T] row values, summed in row order afterwards */
    int T;
    float g;
} RelRows;

/* row i of one matrix over the window [a, i]: returns its KL, overwrites the
 * row of s with its gradient (zeros outside the window). Each s[j] is read
 * before it is written, so the overwrite needs no copy. */
static double relation_row(float *s, const float *t, int T, int i, int a, float g) {
    double ms = -INFINITY, mt = -INFINITY, Ss = 0.0, St = 0.0;
    for (int j = a; j <= i; j++) {
        ms = fmax(ms, s[j]);
        mt = fmax(mt, t[j]);
    }
    for (int j = a; j <= i; j++) {
        Ss += exp((double)s[j] - ms);
        St += exp((double)t[j] - mt);
    }
    double ls = ms + log(Ss), lt = mt + log(St), kl = 0.0;
    for (int j = 0; j < T; j++) {
        if (j < a || j > i) {
            s[j] = 0.0f;
            continue;
        }
        double lp = t[j] - lt, lq = s[j] - ls, p = exp(lp);
        kl += p * (lp - lq);
        s[j] = (float)(g * (exp(lq) - p));
    }
    return kl;
}

/* matrix row i = m·T + row of the job */
static double relation_one(const RelRows *c, long i) {
    int T = c->T, row = (int)(i % T);
    float *s = c->s + (size_t)i * T;
    if (!c->sel[row]) {
        memset(s, 0, sizeof(float) * (size_t)T);
        return 0.0;
    }
    int a = c->lo ? c->lo[row] : 0;
    if (a < 0 || a > row) a = row; /* a malformed window: the row alone (KL 0) */
    return relation_row(s, c->t + (size_t)i * T, T, row, a, c->g);
}

static void relation_rows(void *vctx, long i0, long i1) {
    const RelRows *c = vctx;
    for (long i = i0; i < i1; i++) c->vals[i] = relation_one(c, i);
}

double bl_relation_kl(float *s, const float *t, int n, int T, const uint8_t *sel, const int *lo,
                      float g) {
    if (n <= 0 || T <= 0) return 0.0;
    size_t rows = (size_t)n * T;
    double sum = 0.0;
    RelRows c = {.s = s, .t = t, .sel = sel, .lo = lo, .T = T, .g = g};
    if (!(c.vals = malloc(sizeof(double) * rows))) { /* the same rows and sum, serially */
        for (size_t i = 0; i < rows; i++) sum += relation_one(&c, (long)i);
        return sum;
    }
    bl_parallel_for((long)rows, (long)(rows * T), relation_rows, &c);
    for (size_t i = 0; i < rows; i++) sum += c.vals[i];
    free(c.vals);
    return sum;
}
