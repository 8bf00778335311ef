/* quant.c - absmean ternary weights and absmax activations (see quant.h). */
#include "ops/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/parallel.h"

/* The loops below are written so that gcc vectorises them without
 * -ffast-math (they run over every weight and activation twice per training
 * step): eight double accumulators instead of one (the mean of |w| may
 * differ in the last bits of a double), comparisons instead of
 * fminf/fmaxf/roundf calls (same results for every non-NaN input). */

double bl_abs_sum_block(const float *w, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += fabs((double)w[i + j]);
    for (; i < n; i++) acc[0] += fabs((double)w[i]);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float bl_wq_scale_of(const double *block_sums, size_t n_blocks, size_t n) {
    double sum = 0.0;
    for (size_t b = 0; b < n_blocks; b++) sum += block_sums[b];
    float mean = n ? (float)(sum / (double)n) : 0.0f;
    return 1.0f / fmaxf(mean, BL_QUANT_EPS);
}

typedef struct {
    const float *w;
    size_t n;
    double *sums;
} AbsJob;

static void abs_blocks(void *ctx, long b0, long b1) {
    const AbsJob *j = ctx;
    for (long b = b0; b < b1; b++) {
        size_t i0 = (size_t)b * BL_ABSMEAN_BLOCK;
        size_t len = j->n - i0 < BL_ABSMEAN_BLOCK ? j->n - i0 : BL_ABSMEAN_BLOCK;
        j->sums[b] = bl_abs_sum_block(j->w + i0, len);
    }
}

float bl_wq_scale(const float *w, size_t n) {
    size_t nb = (n + BL_ABSMEAN_BLOCK - 1) / BL_ABSMEAN_BLOCK;
    double stack[256], *sums = nb <= 256 ? stack : malloc(sizeof(double) * nb);
    if (!sums) { /* the same sums, one block at a time */
        double sum = 0.0;
        for (size_t i0 = 0; i0 < n; i0 += BL_ABSMEAN_BLOCK)
            sum += bl_abs_sum_block(w + i0, n - i0 < BL_ABSMEAN_BLOCK ? n - i0 : BL_ABSMEAN_BLOCK);
        return bl_wq_scale_of(&sum, 1, n);
    }
    AbsJob j = {.w = w, .n = n, .sums = sums};
    bl_parallel_for((long)nb, (long)n, abs_blocks, &j);
    float s = bl_wq_scale_of(sums, nb, n);
    if (sums != stack) free(sums);
    return s;
}

/* clamp(roundf(w·s), −1, 1): for a clamp to ±1, half-away rounding is |w·s| >= ½ */
static inline float ternary(float w, float s) {
    float v = w * s;
    return (float)(v >= 0.5f) - (float)(v <= -0.5f);
}

/* max |x| as the largest of the sign-cleared bit patterns (which order like
 * the values for non-NaN floats), an integer reduction gcc vectorises */
float bl_absmax(const float *x, int n) {
    uint32_t m = 0;
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        u &= 0x7fffffffu;
        m = u > m ? u : m;
    }
    float f;
    memcpy(&f, &m, sizeof f);
    return f;
}

/* the elementwise passes over n weights with a known scale, in chunks on
 * the worker pool */
typedef enum { OUT_WQ, OUT_WEFF, OUT_INT8 } QuantOut;

typedef struct {
    QuantOut out;
    float *f;
    int8_t *q;
    const float *w;
    size_t n;
    float s, lambda;
} QuantJob;

enum { QUANT_CHUNK = 1 << 14 };

static void quant_chunks(void *ctx, long c0, long c1) {
    const QuantJob *j = ctx;
    size_t i0 = (size_t)c0 * QUANT_CHUNK, i1 = (size_t)c1 * QUANT_CHUNK;
    if (i1 > j->n) i1 = j->n;
    float s = j->s, keep = 1.0f - j->lambda, lambda = j->lambda;
    const float *w = j->w;
    switch (j->out) {
    case OUT_WQ:
        for (size_t i = i0; i < i1; i++) j->f[i] = ternary(w[i], s) / s;
        break;
    case OUT_WEFF:
        for (size_t i = i0; i < i1; i++) j->f[i] = keep * w[i] + lambda * (ternary(w[i], s) / s);
        break;
    case OUT_INT8:
        for (size_t i = i0; i < i1; i++) j->q[i] = (int8_t)ternary(w[i], s);
        break;
    }
}

static void quant_pass(QuantJob *j) {
    bl_parallel_for((long)((j->n + QUANT_CHUNK - 1) / QUANT_CHUNK), (long)j->n, quant_chunks, j);
}

float bl_wq(float *wq, const float *w, size_t n) {
    QuantJob j = {.out = OUT_WQ, .f = wq, .w = w, .n = n, .s = bl_wq_scale(w, n)};
    quant_pass(&j);
    return j.s;
}

void bl_weff_scaled(float *weff, const float *w, size_t n, float lambda, float s) {
    QuantJob j = {.out = OUT_WEFF, .f = weff, .w = w, .n = n, .s = s, .lambda = lambda};
    quant_pass(&j);
}

void bl_weff(float *weff, const float *w, size_t n, float lambda) {
    bl_weff_scaled(weff, w, n, lambda, bl_wq_scale(w, n));
}

float bl_wq_int8(int8_t *q, const float *w, size_t n) {
    QuantJob j = {.out = OUT_INT8, .q = q, .w = w, .n = n, .s = bl_wq_scale(w, n)};
    quant_pass(&j);
    return j.s;
}

int bl_actq_levels(int bits) {
    switch (bits) {
    case 8: return 127;
    case 4: return 7;
    case 16: return 0;
    default: return -1;
    }
}

typedef struct {
    float *xq, *scale;
    const float *x;
    int D, Q;
    float lambda;
} ActqJob;

static void actq_rows(void *ctx, long m0, long m1) {
    const ActqJob *j = ctx;
    int D = j->D, Q = j->Q;
    for (long m = m0; m < m1; m++) {
        const float *xr = j->x + (size_t)m * D;
        float *yr = j->xq + (size_t)m * D;
        if (Q == 0) {
            if (yr != xr) memcpy(yr, xr, sizeof(float) * D);
            if (j->scale) j->scale[m] = 1.0f;
            continue;
        }
        float s = (float)Q / fmaxf(bl_absmax(xr, D), BL_QUANT_EPS);
        float lo = (float)(-Q - 1), hi = (float)Q;
        if (j->lambda == 1.0f) {
            for (int i = 0; i < D; i++) yr[i] = bl_round_clamp(xr[i] * s, lo, hi) / s;
        } else {
            float keep = 1.0f - j->lambda, lambda = j->lambda;
            for (int i = 0; i < D; i++)
                yr[i] = keep * xr[i] + lambda * (bl_round_clamp(xr[i] * s, lo, hi) / s);
        }
        if (j->scale) j->scale[m] = s;
    }
}

int bl_actq_blend(float *xq, float *scale, const float *x, int M, int D, int bits, float lambda,
                  BlError *err) {
    int Q = bl_actq_levels(bits);
    if (Q < 0) return bl_fail(err, "activation width %d bits is not one of 4, 8, 16", bits);
    ActqJob j = {.xq = xq, .scale = scale, .x = x, .D = D, .Q = Q, .lambda = lambda};
    bl_parallel_for(M, (long)M * D * 4, actq_rows, &j);
    return 0;
}

int bl_actq(float *xq, float *scale, const float *x, int M, int D, int bits, BlError *err) {
    return bl_actq_blend(xq, scale, x, M, D, bits, 1.0f, err);
}
