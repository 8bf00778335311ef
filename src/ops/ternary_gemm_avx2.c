/* ternary_gemm_avx2.c - the AVX-VNNI (256-bit, VEX) micro-kernel of
 * bl_int8_gemm: a 6 × 64 tile as four 6 × 16 passes, each in 12 ymm
 * accumulators (16 registers: 12 sums, 2 weight loads, 1 broadcast). */
#include "ops/ternary_gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,avxvnni")))

enum { MR = BL_TG_MR };

TARGET static inline __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* the scaled floats of 8 sums; n (1..8) of them stored */
TARGET static inline void store_y(float *y, const float *bias, __m256i acc, __m256 d, int n) {
    __m256 v = _mm256_div_ps(_mm256_cvtepi32_ps(acc), d);
    float f[8];
    if (n >= 8) {
        if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
        _mm256_storeu_ps(y, v);
        return;
    }
    _mm256_storeu_ps(f, v);
    for (int i = 0; i < n; i++) y[i] = bias ? f[i] + bias[i] : f[i];
}

TARGET static inline void store_acc(int32_t *acc, __m256i v, int n) {
    if (n >= 8) {
        _mm256_storeu_si256((__m256i *)acc, v);
        return;
    }
    int32_t a[8];
    _mm256_storeu_si256((__m256i *)a, v);
    memcpy(acc, a, sizeof(int32_t) * (size_t)n);
}

/* columns 16s .. 16s+15 of the tile */
TARGET static void pass16(const BlTgTile *t, int s) {
    __m256i c[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) c[r][0] = c[r][1] = _mm256_set1_epi32(-t->rowsum[r]);
    const int8_t *q = t->q;
    const uint8_t *w = t->w + 64 * s;
    size_t ld = (size_t)t->ldq;
    for (int g = 0; g < t->groups; g++, q += 4, w += 4 * BL_TG_NB) {
        __m256i b0 = _mm256_load_si256((const __m256i *)w);
        __m256i b1 = _mm256_load_si256((const __m256i *)(w + 32));
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256i a = bcast4(q + r * ld);
            c[r][0] = _mm256_dpbusd_avx_epi32(c[r][0], b0, a);
            c[r][1] = _mm256_dpbusd_avx_epi32(c[r][1], b1, a);
        }
    }
    /* the stores go through memory: indexing c by the run-time row and
     * column counts would keep c there for the whole loop above */
    __m256i out[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) out[r][0] = c[r][0], out[r][1] = c[r][1];
    int n = t->cols - 16 * s;
    for (int r = 0; r < t->rows; r++) {
        size_t o = (size_t)r * t->ldc + 16 * s;
        for (int h = 0; h < 2 && n > 8 * h; h++) {
            if (t->y)
                store_y(t->y + o + 8 * h, t->bias ? t->bias + 16 * s + 8 * h : NULL, out[r][h],
                        _mm256_set1_ps(t->div[r]), n - 8 * h);
            else
                store_acc(t->acc + o + 8 * h, out[r][h], n - 8 * h);
        }
    }
}

TARGET void bl_tg_tile_avx2vnni(const BlTgTile *t) {
    for (int s = 0; s < BL_TG_NB / 16 && 16 * s < t->cols; s++) pass16(t, s);
}

#endif
