/* ternary_gemm_avx512.c - the AVX-512 VNNI micro-kernel of bl_int8_gemm: a
 * 6 × 64 tile in 24 zmm accumulators; per group of 4 k, four 64-byte weight
 * loads (16 columns × 4 k each) and one vpdpbusd per row and load, the row's
 * 4 activation bytes broadcast straight from memory (the signed operand may
 * be an embedded broadcast; the weights, t+1, are the unsigned one). */
#include "ops/ternary_gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

enum { MR = BL_TG_MR, NP = BL_TG_NB / 16 };

TARGET static inline __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

TARGET void bl_tg_tile_avx512vnni(const BlTgTile *t) {
    __m512i c[MR][NP];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        __m512i s = _mm512_set1_epi32(-t->rowsum[r]);
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) c[r][p] = s;
    }
    const int8_t *q = t->q;
    const uint8_t *w = t->w;
    size_t ld = (size_t)t->ldq;
    for (int g = 0; g < t->groups; g++, q += 4, w += 4 * BL_TG_NB) {
        __m512i b[NP];
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) b[p] = _mm512_load_si512((const void *)(w + 64 * p));
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m512i a = bcast4(q + r * ld);
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) c[r][p] = _mm512_dpbusd_epi32(c[r][p], b[p], a);
        }
    }
    /* the stores go through memory: indexing c by the run-time row and
     * column counts would keep c there for the whole loop above */
    __m512i out[MR][NP];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) out[r][p] = c[r][p];
    for (int r = 0; r < t->rows; r++) {
        __m512 d = _mm512_set1_ps(t->y ? t->div[r] : 1.0f);
        for (int p = 0; p < NP && 16 * p < t->cols; p++) {
            int n = t->cols - 16 * p;
            __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
            size_t o = (size_t)r * t->ldc + 16 * p;
            if (!t->y) {
                _mm512_mask_storeu_epi32(t->acc + o, m, out[r][p]);
                continue;
            }
            __m512 v = _mm512_div_ps(_mm512_cvtepi32_ps(out[r][p]), d);
            if (t->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, t->bias + 16 * p));
            _mm512_mask_storeu_ps(t->y + o, m, v);
        }
    }
}

#endif
