/* loss.c - cross-entropy, KL, top-K KL and hidden cosine losses (see loss.h).
 * Softmaxes shift by the row maximum, exponentiate in float (bl_expf) and sum
 * in double. */
#include "ops/loss.h"

#include <math.h>
#include <stddef.h>

#include "core/vmath.h"

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

/* S = Σ_j exp((x_j − mx)/τ) with mx = max_j x_j, so log Σ_j exp(x_j/τ) =
 * mx/τ + log S.  The gradient loops recompute exp((x_j − mx)·(1/τ)) with the
 * same float expression, so their softmax is exactly the one summed here. */
static double sum_exp(const float *x, int V, float tau, float *mx) {
    float m = row_max(x, V), rt = 1.0f / tau, e[BLK];
    double acc[LANES] = {0};
    for (int j0 = 0; j0 < V; j0 += BLK) {
        int n = V - j0 < BLK ? V - j0 : BLK;
        for (int k = 0; k < n; k++) e[k] = bl_expf((x[j0 + k] - m) * rt);
        add_lanes(acc, e, n);
    }
    *mx = m;
    return fold_lanes(acc);
}

/* log Σ_j exp(x_j / τ) */
static double lse(const float *x, int V, float tau) {
    float mx;
    double s = sum_exp(x, V, tau, &mx);
    return (double)mx / tau + log(s);
}

// ----------------------------------------------------------------------------
// cross-entropy: −log softmax(z)[target]; dz = softmax(z) − onehot

double bl_ce_loss(float *dlogits, float grad_weight, const float *logits, const BlLossRows *r) {
    int n = count_rows(r), V = r->V;
    if (n == 0) return 0.0;
    double loss = 0.0, g = (double)grad_weight / n;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++) {
            if (!selected(r, b, t)) continue;
            size_t row = (size_t)b * r->T + t;
            const float *z = logits + row * V;
            int y = r->tokens[row + 1];
            float mx;
            double S = sum_exp(z, V, 1.0f, &mx);
            loss += (double)mx + log(S) - z[y];
            if (!dlogits) continue;
            float *d = dlogits + row * V, gs = (float)(g / S); /* softmax_j = e_j / S */
            for (int j = 0; j < V; j++) d[j] += gs * bl_expf(z[j] - mx);
            d[y] -= (float)g;
        }
    return loss / n;
}

// ----------------------------------------------------------------------------
// KL: τ²·Σ p·(log p − log q); ds = τ·(q − p)

double bl_kl_loss(float *dlogits, float grad_weight, const float *s, const float *t,
                  const BlLossRows *r, float tau) {
    int n = count_rows(r), V = r->V;
    if (n == 0) return 0.0;
    double loss = 0.0, g = (double)grad_weight * tau / n;
    for (int b = 0; b < r->B; b++)
        for (int tt = 0; tt < r->T; tt++) {
            if (!selected(r, b, tt)) continue;
            size_t row = (size_t)b * r->T + tt;
            const float *zs = s + row * V, *zt = t + row * V;
            float ms, mt;
            double Ss = sum_exp(zs, V, tau, &ms), St = sum_exp(zt, V, tau, &mt);
            /* log p_j − log q_j = (zt_j − zs_j)/τ − c, in double (the float
             * difference is exact there); p_j = et_j / St, q_j = es_j / Ss */
            double c = ((double)mt - ms) / tau + log(St) - log(Ss), rtd = 1.0 / tau;
            double acc[LANES] = {0};
            float rt = 1.0f / tau, gq = (float)(g / Ss), gp = (float)(g / St);
            float *d = dlogits ? dlogits + row * V : NULL;
            float et[BLK];
            for (int j0 = 0; j0 < V; j0 += BLK) {
                int n = V - j0 < BLK ? V - j0 : BLK;
                const float *s0 = zs + j0, *t0 = zt + j0;
                for (int k = 0; k < n; k++) et[k] = bl_expf((t0[k] - mt) * rt);
                if (d)
                    for (int k = 0; k < n; k++)
                        d[j0 + k] += gq * bl_expf((s0[k] - ms) * rt) - gp * et[k];
                int k = 0;
                for (; k + LANES <= n; k += LANES)
                    for (int l = 0; l < LANES; l++)
                        acc[l] += et[k + l] * (((double)t0[k + l] - s0[k + l]) * rtd - c);
                for (int l = 0; k + l < n; l++)
                    acc[l] += et[k + l] * (((double)t0[k + l] - s0[k + l]) * rtd - c);
            }
            loss += fold_lanes(acc) / St;
        }
    return (double)tau * tau * loss / n;
}

// ----------------------------------------------------------------------------
// top-K KL

void bl_topk_logprobs(int *ids, float *logp, const float *t, int n, int V, int K, float tau) {
    for (int i = 0; i < n; i++) {
        const float *z = t + (size_t)i * V;
        int *id = ids + (size_t)i * K;
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
        double l = lse(z, V, tau);
        for (int k = 0; k < K; k++) logp[(size_t)i * K + k] = (float)(z[id[k]] / tau - l);
    }
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

double bl_topk_kl_loss(float *dlogits, float grad_weight, const float *s, const int *t_ids,
                       const float *t_logp, int K, const BlLossRows *r, float tau) {
    if (K < 1 || K > BL_TOPK_MAX || K > r->V) return NAN;
    int n = count_rows(r), V = r->V;
    if (n == 0) return 0.0;
    double loss = 0.0, g = (double)grad_weight * tau / n;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++) {
            if (!selected(r, b, t)) continue;
            size_t row = (size_t)b * r->T + t;
            loss += topk_row(dlogits ? dlogits + row * V : NULL, g, s + row * V,
                             t_ids + row * K, t_logp + row * K, K, V, tau);
        }
    return (double)tau * tau * loss / n;
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
