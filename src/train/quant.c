/* quant.c - absmean ternary weights and absmax activations (see quant.h). */
#include "train/quant.h"

#include <math.h>

float bl_wq_scale(const float *w, size_t n) {
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) acc += fabs((double)w[i]);
    float mean = n ? (float)(acc / (double)n) : 0.0f;
    return 1.0f / fmaxf(mean, BL_QUANT_EPS);
}

static inline float ternary(float w, float s) {
    return fminf(fmaxf(roundf(w * s), -1.0f), 1.0f);
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
        float amax = 0.0f;
        for (int i = 0; i < D; i++) amax = fmaxf(amax, fabsf(xr[i]));
        float s = (float)Q / fmaxf(amax, BL_QUANT_EPS);
        float lo = (float)(-Q - 1), hi = (float)Q;
        for (int i = 0; i < D; i++) yr[i] = fminf(fmaxf(roundf(xr[i] * s), lo), hi) / s;
        if (scale) scale[m] = s;
    }
    return 0;
}
