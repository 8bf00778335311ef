/* quant.c - absmean ternary weights and absmax activations (see quant.h). */
#include "ops/quant.h"

#include <math.h>
#include <string.h>

/* The loops below are written so that gcc vectorises them without
 * -ffast-math (they run over every weight and activation twice per training
 * step): eight double accumulators instead of one (the mean of |w| may
 * differ in the last bits of a double), comparisons instead of
 * fminf/fmaxf/roundf calls (same results for every non-NaN input). */

float bl_wq_scale(const float *w, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += fabs((double)w[i + j]);
    for (; i < n; i++) acc[0] += fabs((double)w[i]);
    double sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    float mean = n ? (float)(sum / (double)n) : 0.0f;
    return 1.0f / fmaxf(mean, BL_QUANT_EPS);
}

/* clamp(roundf(w·s), −1, 1): for a clamp to ±1, half-away rounding is |w·s| >= ½ */
static inline float ternary(float w, float s) {
    float v = w * s;
    return (float)(v >= 0.5f) - (float)(v <= -0.5f);
}

/* roundf (half away from zero) of v clamped to the integers [lo, hi], NaN to
 * lo, as fminf/fmaxf/roundf did; clamping first keeps the int conversion
 * defined (|v| <= 128), and v − trunc(v) is exact */
static inline float round_clamp(float v, float lo, float hi) {
    v = v > lo ? v : lo;
    v = v < hi ? v : hi;
    float t = (float)(int)v;
    return t + (fabsf(v - t) >= 0.5f ? copysignf(1.0f, v) : 0.0f);
}

/* max |x| as the largest of the sign-cleared bit patterns (which order like
 * the values for non-NaN floats), an integer reduction gcc vectorises */
static float absmax(const float *x, int n) {
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

float bl_wq(float *wq, const float *w, size_t n) {
    float s = bl_wq_scale(w, n);
    for (size_t i = 0; i < n; i++) wq[i] = ternary(w[i], s) / s;
    return s;
}

void bl_weff(float *weff, const float *w, size_t n, float lambda) {
    float s = bl_wq_scale(w, n);
    float keep = 1.0f - lambda;
    for (size_t i = 0; i < n; i++) weff[i] = keep * w[i] + lambda * (ternary(w[i], s) / s);
}

float bl_wq_int8(int8_t *q, const float *w, size_t n) {
    float s = bl_wq_scale(w, n);
    for (size_t i = 0; i < n; i++) q[i] = (int8_t)ternary(w[i], s);
    return s;
}

int bl_actq_levels(int bits) {
    switch (bits) {
    case 8: return 127;
    case 4: return 7;
    case 16: return 0;
    default: return -1;
    }
}

int bl_actq(float *xq, float *scale, const float *x, int M, int D, int bits, BlError *err) {
    int Q = bl_actq_levels(bits);
    if (Q < 0) return bl_fail(err, "activation width %d bits is not one of 4, 8, 16", bits);
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * D;
        float *yr = xq + (size_t)m * D;
        if (Q == 0) {
            for (int i = 0; i < D; i++) yr[i] = xr[i];
            if (scale) scale[m] = 1.0f;
            continue;
        }
        float s = (float)Q / fmaxf(absmax(xr, D), BL_QUANT_EPS);
        float lo = (float)(-Q - 1), hi = (float)Q;
        for (int i = 0; i < D; i++) yr[i] = round_clamp(xr[i] * s, lo, hi) / s;
        if (scale) scale[m] = s;
    }
    return 0;
}
