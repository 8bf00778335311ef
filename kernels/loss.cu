// loss.cu - CE, KL(τ), top-K + "other" KL, the hidden cosine/magnitude loss
// and the attention-relation KL: one block per row, row losses in double, a deterministic final sum
// (see loss.cuh). The row count is read back first so that the gradient
// scale g is formed on the host exactly as the CPU forms it.
#include <limits.h>
#include <math.h>

#include "common.cuh"

// ----------------------------------------------------------------------------
// row selection, counting, totals

__device__ __forceinline__ bool row_selected(const int *tokens, const uint8_t *mask, int T, int V,
                                             size_t row) {
    int t = (int)(row % T);
    if (t + 1 >= T) return false;
    int nxt = tokens[row + 1];
    return (!mask || mask[row]) && nxt >= 0 && nxt < V;
}

// *count = rows selected (token mode: next-token rule; else mask only)
__global__ void count_rows_kernel(int *count, const int *tokens, const uint8_t *mask, int nrows,
                                  int T, int V, bool token_mode) {
    __shared__ float sh[32];
    float c = 0.0f;  // exact: at most a few million rows
    for (int r = threadIdx.x; r < nrows; r += blockDim.x)
        c += token_mode ? (float)row_selected(tokens, mask, T, V, r) : (float)(!mask || mask[r]);
    c = bl_block_sum(c, sh);
    if (threadIdx.x == 0) *count = (int)c;
}

// *total = Σ row[0..n) in double, one block, fixed order per thread count
__global__ void sum_rows_kernel(double *total, const double *row, int n) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += row[i];
    acc = bl_block_sum_d(acc, sh);
    if (threadIdx.x == 0) *total = acc;
}

// Scratch: [nrows doubles of row values][2 doubles of totals][count].
struct LossScratch {
    double *row, *total;
    int *count;
};

static bool loss_scratch(LossScratch *s, size_t nrows) {
    double *p = (double *)bl_cuda_scratch_(BL_WS_RED, sizeof(double) * (nrows + 3));
    if (!p) return false;
    s->row = p;
    s->total = p + nrows;
    s->count = (int *)(p + nrows + 2);
    return true;
}

// device → host, waiting for the stream; false (recorded) on failure
static bool read_back(void *host, const void *dev, size_t bytes) {
    cudaStream_t st = bl_cuda_stream_();
    return !BL_CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, st)) &&
           !BL_CUDA_CHECK(cudaStreamSynchronize(st));
}

static int count_rows(LossScratch *s, const int *tokens, const uint8_t *mask, int nrows, int T,
                      int V, bool token_mode) {
    BL_LAUNCH(1, 256, 0, bl_cuda_stream_(), count_rows_kernel)(s->count, tokens, mask, nrows, T, V,
                                                        token_mode);
    int n = -1;
    if (BL_LAUNCHED("count_rows") || !read_back(&n, s->count, sizeof n)) return -1;
    return n;
}

static double total_rows(LossScratch *s, int nrows) {
    BL_LAUNCH(1, 256, 0, bl_cuda_stream_(), sum_rows_kernel)(s->total, s->row, nrows);
    double v = NAN;
    if (BL_LAUNCHED("sum_rows") || !read_back(&v, s->total, sizeof v)) return NAN;
    return v;
}

// block max of x[0..V) and Σ exp((x − max)·rt) (fp32 per block)
__device__ void softmax_stats(const float *x, int V, float rt, float *sh, float *mx, float *S) {
    float m = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, x[j]);
    m = bl_block_max(m, sh);
    float s = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) s += bl_exp((x[j] - m) * rt);
    *S = bl_block_sum(s, sh);
    *mx = m;
}

// ----------------------------------------------------------------------------
// cross-entropy: −log softmax(z)[y]; dz += g·(softmax(z) − onehot)

__global__ void ce_row_kernel(double *rowloss, float *dlogits, const float *logits,
                              const int *tokens, const uint8_t *mask, int T, int V, double g) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    if (!row_selected(tokens, mask, T, V, row)) {
        if (threadIdx.x == 0) rowloss[row] = 0.0;
        return;
    }
    const float *z = logits + row * V;
    int y = tokens[row + 1];
    float mx, S;
    softmax_stats(z, V, 1.0f, sh, &mx, &S);
    if (threadIdx.x == 0) rowloss[row] = (double)mx + log((double)S) - z[y];
    if (!dlogits) return;
    float *d = dlogits + row * V, gs = (float)(g / S);
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        d[j] += gs * bl_exp(z[j] - mx);
        if (j == y) d[j] -= (float)g;
    }
}

extern "C" double bl_cuda_ce_loss(float *dlogits, float grad_weight, const float *logits,
                                  const BlLossRows *r) {
    int nrows = r->B * r->T;
    LossScratch s;
    if (nrows <= 0 || r->V <= 0) return 0.0;
    if (!loss_scratch(&s, nrows)) return NAN;
    int n = count_rows(&s, r->tokens, r->mask, nrows, r->T, r->V, true);
    if (n <= 0) return n == 0 ? 0.0 : NAN;
    BL_LAUNCH(nrows, 256, 0, bl_cuda_stream_(), ce_row_kernel)(s.row, dlogits, logits, r->tokens, r->mask,
                                                        r->T, r->V, (double)grad_weight / n);
    if (BL_LAUNCHED("ce_row")) return NAN;
    return total_rows(&s, nrows) / n;
}

// ----------------------------------------------------------------------------
// KL: τ²·Σ p·(log p − log q); ds += g·(q − p) with g = w·τ/n

__global__ void kl_row_kernel(double *rowloss, float *dlogits, const float *s, const float *t,
                              const int *tokens, const uint8_t *mask, int T, int V, float tau,
                              double g) {
    __shared__ float sh[32];
    __shared__ double shd[32];
    size_t row = blockIdx.x;
    if (!row_selected(tokens, mask, T, V, row)) {
        if (threadIdx.x == 0) rowloss[row] = 0.0;
        return;
    }
    const float *zs = s + row * V, *zt = t + row * V;
    float rt = 1.0f / tau, ms, mt, Ss, St;
    softmax_stats(zs, V, rt, sh, &ms, &Ss);
    softmax_stats(zt, V, rt, sh, &mt, &St);
    // log p_j − log q_j = (zt_j − zs_j)/τ − c
    double c = ((double)mt - ms) / tau + log((double)St) - log((double)Ss), rtd = 1.0 / tau;
    float gq = (float)(g / Ss), gp = (float)(g / St);
    float *d = dlogits ? dlogits + row * V : NULL;
    double acc = 0.0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float et = bl_exp((zt[j] - mt) * rt);
        if (d) d[j] += gq * bl_exp((zs[j] - ms) * rt) - gp * et;
        acc += et * (((double)zt[j] - zs[j]) * rtd - c);
    }
    acc = bl_block_sum_d(acc, shd);
    if (threadIdx.x == 0) rowloss[row] = acc / St;
}

extern "C" double bl_cuda_kl_loss(float *dlogits, float grad_weight, const float *s,
                                  const float *t, const BlLossRows *r, float tau) {
    int nrows = r->B * r->T;
    LossScratch sc;
    if (nrows <= 0 || r->V <= 0) return 0.0;
    if (!loss_scratch(&sc, nrows)) return NAN;
    int n = count_rows(&sc, r->tokens, r->mask, nrows, r->T, r->V, true);
    if (n <= 0) return n == 0 ? 0.0 : NAN;
    BL_LAUNCH(nrows, 256, 0, bl_cuda_stream_(), kl_row_kernel)(sc.row, dlogits, s, t, r->tokens, r->mask,
                                                        r->T, r->V, tau,
                                                        (double)grad_weight * tau / n);
    if (BL_LAUNCHED("kl_row")) return NAN;
    return (double)tau * tau * total_rows(&sc, nrows) / n;
}

// ----------------------------------------------------------------------------
// top-K teacher side: K arg-max passes per row

// (v, j) comes before (pv, pj) in "descending value, ascending id" order
__device__ __forceinline__ bool before(float v, int j, float pv, int pj) {
    return v > pv || (v == pv && j < pj);
}

__global__ void topk_logprobs_kernel(int *ids, float *logp, const float *t, int V, int K,
                                     float tau) {
    __shared__ float shv[32], sh[32];
    __shared__ int shi[32];
    __shared__ float prev_v;
    __shared__ int prev_j;
    size_t row = blockIdx.x;
    const float *z = t + row * V;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int k = 0; k < K; k++) {
        float pv = k ? prev_v : INFINITY;
        int pj = k ? prev_j : -1;
        float bv = -INFINITY;
        int bj = -1;  // best candidate ordered after the previous pick
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float v = z[j];
            bool after = k == 0 || before(pv, pj, v, j);
            if (after && (bj < 0 || before(v, j, bv, bj))) {
                bv = v;
                bj = j;
            }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oj = __shfl_xor_sync(0xffffffffu, bj, o);
            if (oj >= 0 && (bj < 0 || before(ov, oj, bv, bj))) {
                bv = ov;
                bj = oj;
            }
        }
        if (lane == 0) {
            shv[w] = bv;
            shi[w] = bj;
        }
        __syncthreads();
        if (w == 0) {
            bv = lane < nw ? shv[lane] : -INFINITY;
            bj = lane < nw ? shi[lane] : -1;
            for (int o = 16; o > 0; o >>= 1) {
                float ov = __shfl_xor_sync(0xffffffffu, bv, o);
                int oj = __shfl_xor_sync(0xffffffffu, bj, o);
                if (oj >= 0 && (bj < 0 || before(ov, oj, bv, bj))) {
                    bv = ov;
                    bj = oj;
                }
            }
            if (lane == 0) {
                prev_v = bv;
                prev_j = bj;
                ids[row * K + k] = bj;
            }
        }
        __syncthreads();
    }
    float mx, S;
    softmax_stats(z, V, 1.0f / tau, sh, &mx, &S);
    double l = (double)mx / tau + log((double)S);
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        int j = ids[row * K + k];
        logp[row * K + k] = (float)((double)(z[j] / tau) - l);
    }
}

extern "C" void bl_cuda_topk_logprobs(int *ids, float *logp, const float *t, int n, int V, int K,
                                      float tau) {
    if (n <= 0 || V <= 0) return;
    if (K < 1 || K > BL_TOPK_MAX || K > V) {
        BL_FAIL("topk_logprobs: K must be in 1..min(V, 256)");
        return;
    }
    BL_LAUNCH(n, 256, 0, bl_cuda_stream_(), topk_logprobs_kernel)(ids, logp, t, V, K, tau);
    BL_LAUNCHED("topk_logprobs");
}

// ----------------------------------------------------------------------------
// top-K + "other" KL: teacher (p_1..p_K, p_o) against the student's
// (q_id1..q_idK, Q_o); ds_j = τ·q_j·(P − p_c(j)/Q_c(j)) per bucket c

__device__ bool in_sorted(const int *sorted, int K, int j) {
    int lo = 0, hi = K - 1;
    while (lo <= hi) {
        int mid = (lo + hi) >> 1;
        if (sorted[mid] == j) return true;
        if (sorted[mid] < j) lo = mid + 1;
        else hi = mid - 1;
    }
    return false;
}

__global__ void topk_kl_row_kernel(double *rowloss, float *dlogits, const float *s,
                                   const int *t_ids, const float *t_logp, int K, const int *tokens,
                                   const uint8_t *mask, int T, int V, float tau, double g) {
    __shared__ int sorted[BL_TOPK_MAX];
    __shared__ float sh[32];
    __shared__ double shd[32];
    __shared__ double psum_s;
    __shared__ int bad_s;
    size_t row = blockIdx.x;
    if (!row_selected(tokens, mask, T, V, row)) {
        if (threadIdx.x == 0) rowloss[row] = 0.0;
        return;
    }
    const float *z = s + row * V;
    const int *id = t_ids + row * K;
    const float *lp = t_logp + row * K;
    if (threadIdx.x == 0) {  // K ≤ 256: an insertion sort by one thread is cheap
        double ps = 0.0;
        for (int k = 0; k < K; k++) {
            int v = id[k], p = k;
            while (p > 0 && sorted[p - 1] > v) {
                sorted[p] = sorted[p - 1];
                p--;
            }
            sorted[p] = v;
            ps += exp((double)lp[k]);
        }
        int bad = 0;
        for (int k = 0; k < K; k++)
            if (sorted[k] < 0 || sorted[k] >= V || (k > 0 && sorted[k] == sorted[k - 1])) bad = 1;
        psum_s = ps;
        bad_s = bad;
    }
    __syncthreads();
    if (bad_s) {  // ids must be distinct and in range
        if (threadIdx.x == 0) rowloss[row] = NAN;
        return;
    }
    double psum = psum_s;
    float rt = 1.0f / tau, mx, S;
    softmax_stats(z, V, rt, sh, &mx, &S);
    double la = (double)mx / tau + log((double)S);
    // log Σ_{j ∉ ids} exp(z_j/τ), exactly over the rest (no 1 − Σq cancellation)
    float mr = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        if (!in_sorted(sorted, K, j)) mr = fmaxf(mr, z[j]);
    mr = bl_block_max(mr, sh);
    double lr = -INFINITY;
    if (mr != -INFINITY) {
        double acc = 0.0;
        for (int j = threadIdx.x; j < V; j += blockDim.x)
            if (!in_sorted(sorted, K, j)) acc += exp(((double)z[j] - mr) / tau);
        acc = bl_block_sum_d(acc, shd);
        lr = (double)mr / tau + log(acc);
    }
    double po = (psum < 1.0 && lr > -INFINITY) ? 1.0 - psum : 0.0;
    double lpo = po > 0.0 ? log1p(-psum) : 0.0;
    double ptot = psum + po;
    if (threadIdx.x == 0) {
        double kl = 0.0;
        for (int k = 0; k < K; k++) kl += exp((double)lp[k]) * (lp[k] - (z[id[k]] / tau - la));
        if (po > 0.0) kl += po * (lpo - (lr - la));
        rowloss[row] = kl;
    }
    if (!dlogits) return;
    float *d = dlogits + row * V;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {  // the rest: q_j·P − p_o·q_j/Q_o
        if (in_sorted(sorted, K, j)) continue;
        double zj = z[j] / tau;
        double rest = po > 0.0 ? po * exp(zj - lr) : 0.0;
        d[j] += (float)(g * (exp(zj - la) * ptot - rest));
    }
    for (int k = threadIdx.x; k < K; k += blockDim.x)  // the ids: q_k·P − p_k
        d[id[k]] += (float)(g * (exp(z[id[k]] / tau - la) * ptot - exp((double)lp[k])));
}

extern "C" double bl_cuda_topk_kl_loss(float *dlogits, float grad_weight, const float *s,
                                       const int *t_ids, const float *t_logp, int K,
                                       const BlLossRows *r, float tau) {
    if (K < 1 || K > BL_TOPK_MAX || K > r->V) return NAN;
    int nrows = r->B * r->T;
    LossScratch sc;
    if (nrows <= 0) return 0.0;
    if (!loss_scratch(&sc, nrows)) return NAN;
    int n = count_rows(&sc, r->tokens, r->mask, nrows, r->T, r->V, true);
    if (n <= 0) return n == 0 ? 0.0 : NAN;
    BL_LAUNCH(nrows, 256, 0, bl_cuda_stream_(), topk_kl_row_kernel)(sc.row, dlogits, s, t_ids, t_logp, K,
                                                             r->tokens, r->mask, r->T, r->V, tau,
                                                             (double)grad_weight * tau / n);
    if (BL_LAUNCHED("topk_kl_row")) return NAN;
    return (double)tau * tau * total_rows(&sc, nrows) / n;
}

// ----------------------------------------------------------------------------
// hidden cosine + magnitude, one block per (row) of one layer

#define NORM_EPS 1e-8

__global__ void hidden_row_kernel(double *rcos, double *rmag, float *d, const float *hs,
                                  const float *ht, const uint8_t *mask, int D, double wl,
                                  float w_cos, float w_mag) {
    __shared__ double shd[32];
    size_t m = blockIdx.x;
    if (mask && !mask[m]) {
        if (threadIdx.x == 0) rcos[m] = rmag[m] = 0.0;
        return;
    }
    const float *a = hs + m * D, *b = ht + m * D;
    double aa = 0.0, bb = 0.0, ab = 0.0;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
        ab += (double)a[i] * b[i];
    }
    aa = bl_block_sum_d(aa, shd);
    bb = bl_block_sum_d(bb, shd);
    ab = bl_block_sum_d(ab, shd);
    double na = fmax(sqrt(aa), NORM_EPS), nb = fmax(sqrt(bb), NORM_EPS);
    double cs = ab / (na * nb), dlog = log(na) - log(nb);
    if (threadIdx.x == 0) {
        rcos[m] = wl * (1.0 - cs);
        rmag[m] = wl * dlog * dlog;
    }
    if (!d) return;
    // the a/‖a‖² terms come from ‖a‖, constant below the eps floor
    double ca = sqrt(aa) > NORM_EPS ? (w_cos * cs + 2.0 * w_mag * dlog) / (na * na) : 0.0;
    double cb = w_cos / (na * nb);
    float *dr = d + m * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x) dr[i] += (float)(wl * (ca * a[i] - cb * b[i]));
}

extern "C" double bl_cuda_hidden_loss(float *const *dhs, float w_cos, float w_mag,
                                      const float *const *hs, const float *const *ht,
                                      const float *layer_w, int n_layers, const uint8_t *mask,
                                      int M, int D, double *mag) {
    if (mag) *mag = 0.0;
    double wsum = 0.0;
    for (int l = 0; l < n_layers; l++) wsum += layer_w ? layer_w[l] : 1.0;
    if (M <= 0 || D <= 0 || n_layers <= 0 || wsum == 0.0) return 0.0;
    size_t rows = (size_t)n_layers * M;
    LossScratch sc;
    if (!loss_scratch(&sc, 2 * rows)) return NAN;
    int n = count_rows(&sc, NULL, mask, M, 1, 1, false);
    if (n <= 0) return n == 0 ? 0.0 : NAN;
    unsigned threads = D >= 256 ? 256 : (unsigned)((D + 31) / 32 * 32);
    for (int l = 0; l < n_layers; l++) {
        double wl = (layer_w ? layer_w[l] : 1.0) / (n * wsum);
        BL_LAUNCH(M, threads, 0, bl_cuda_stream_(), hidden_row_kernel)(
            sc.row + (size_t)l * M, sc.row + rows + (size_t)l * M, dhs ? dhs[l] : NULL, hs[l],
            ht[l], mask, D, wl, w_cos, w_mag);
        if (BL_LAUNCHED("hidden_row")) return NAN;
    }
    double lcos = total_rows(&sc, (int)rows);
    // the magnitude rows follow the cosine rows
    BL_LAUNCH(1, 256, 0, bl_cuda_stream_(), sum_rows_kernel)(sc.total + 1, sc.row + rows, (int)rows);
    double lmag = NAN;
    if (BL_LAUNCHED("sum_rows") || !read_back(&lmag, sc.total + 1, sizeof lmag)) return NAN;
    if (mag) *mag = lmag;
    return lcos;
}

// ----------------------------------------------------------------------------
// attention-relation KL: one block per (matrix, row) of the n·T rows, the
// window's softmaxes in double; s overwritten by g·(q − p) (0 off-window)

__global__ void relation_row_kernel(double *rowloss, float *s, const float *t, int T,
                                    const uint8_t *sel, const int *lo, float g) {
    __shared__ float sh[32];
    __shared__ double shd[32];
    size_t idx = blockIdx.x;
    int i = (int)(idx % T);
    float *sr = s + idx * T;
    const float *tr = t + idx * T;
    if (!sel[i]) {
        for (int j = threadIdx.x; j < T; j += blockDim.x) sr[j] = 0.0f;
        if (threadIdx.x == 0) rowloss[idx] = 0.0;
        return;
    }
    int a = lo ? lo[i] : 0;
    if (a < 0 || a > i) a = i;  // a malformed window: the row alone (KL 0), as the CPU
    float fs = -INFINITY, ft = -INFINITY;
    for (int j = a + threadIdx.x; j <= i; j += blockDim.x) {
        fs = fmaxf(fs, sr[j]);
        ft = fmaxf(ft, tr[j]);
    }
    double ms = bl_block_max(fs, sh), mt = bl_block_max(ft, sh);
    double Ss = 0.0, St = 0.0;
    for (int j = a + threadIdx.x; j <= i; j += blockDim.x) {
        Ss += exp((double)sr[j] - ms);
        St += exp((double)tr[j] - mt);
    }
    Ss = bl_block_sum_d(Ss, shd);
    St = bl_block_sum_d(St, shd);
    double ls = ms + log(Ss), lt = mt + log(St), kl = 0.0;
    for (int j = threadIdx.x; j < T; j += blockDim.x) {
        if (j < a || j > i) {
            sr[j] = 0.0f;
            continue;
        }
        double lp = tr[j] - lt, lq = sr[j] - ls, p = exp(lp);
        kl += p * (lp - lq);
        sr[j] = (float)(g * (exp(lq) - p));
    }
    kl = bl_block_sum_d(kl, shd);
    if (threadIdx.x == 0) rowloss[idx] = kl;
}

extern "C" double bl_cuda_relation_kl(float *s, const float *t, int n, int T, const uint8_t *sel,
                                      const int *lo, float g) {
    if (n <= 0 || T <= 0) return 0.0;
    size_t rows = (size_t)n * T;
    LossScratch sc;
    if (rows > (size_t)INT_MAX || !loss_scratch(&sc, rows)) return NAN;
    unsigned threads = T >= 256 ? 256 : (unsigned)((T + 31) / 32 * 32);
    BL_LAUNCH((unsigned)rows, threads, 0, bl_cuda_stream_(), relation_row_kernel)(sc.row, s, t, T,
                                                                              sel, lo, g);
    if (BL_LAUNCHED("relation_row")) return NAN;
    return total_rows(&sc, (int)rows);
}
