/* quants.c - the ggml type table and dequantization of each block type to fp32.
 *
 * Block layouts and value orders follow ggml's ggml-common.h and the scalar
 * dequantize_row_* routines; blocks are read byte-wise (little-endian) so the
 * code does not depend on struct packing or host byte order. */
#include "io/quants.h"

#include <stdbool.h>
#include <string.h>

#define QK_K 256

typedef void (*DequantFn)(const uint8_t *block, float *y);

typedef struct {
    const char *name;
    size_t block_size;  /* 0: known to ggml but not readable by bitlab */
    size_t type_size;
    DequantFn dequant;  /* one block; NULL for the plain float types */
} TypeInfo;

// ----------------------------------------------------------------------------
// scalar conversions

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float bl_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* inf / nan: keep the payload */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp != 0)
        return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
    if (man == 0)
        return bits_f32(sign);
    /* subnormal: renormalise so the leading 1 becomes implicit */
    int e = 113;
    while (!(man & 0x400u)) {
        man <<= 1;
        e--;
    }
    return bits_f32(sign | ((uint32_t)e << 23) | ((man & 0x3ffu) << 13));
}

uint16_t bl_fp32_to_fp16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t man = u & 0x7fffffu;
    if (exp == 0xff) /* inf stays inf; nan stays a quiet nan */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);
    uint32_t m = man | 0x800000u; /* 24-bit significand with implicit 1 */
    int shift = 13;               /* bits dropped for a normal half */
    if (e <= 0) {
        if (e < -10) /* below half the smallest subnormal: rounds to zero */
            return sign;
        shift = 14 - e;
        e = 0;
    }
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q++; /* round to nearest even; a carry moves into the exponent naturally */
    if (e > 0)
        q = ((uint32_t)e << 10) + (q - 0x400u);
    return (uint16_t)(sign | q);
}

float bl_bf16_to_fp32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* Round to nearest, ties to even; a NaN keeps its sign and top payload bits
 * and gets the quiet bit, so that dropping the low half cannot make it Inf. */
uint16_t bl_fp32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(u >> 16 | 0x40u);
    u += 0x7fffu + (u >> 16 & 1u); /* a carry moves into the exponent (up to Inf) */
    return (uint16_t)(u >> 16);
}

static float rd_f16(const uint8_t *p) { return bl_fp16_to_fp32((uint16_t)(p[0] | (p[1] << 8))); }

// ----------------------------------------------------------------------------
// 32-value blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0

static void dq_q4_0(const uint8_t *b, float *y) { /* d, qs[16] */
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0xf) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void dq_q4_1(const uint8_t *b, float *y) { /* d, m, qs[16] */
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0xf) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5: the fifth bit of value j is bit j of the 32-bit qh. */
static void q5_values(const uint8_t *qh4, const uint8_t *qs, int q[32]) {
    uint32_t qh = (uint32_t)qh4[0] | (uint32_t)qh4[1] << 8 | (uint32_t)qh4[2] << 16 |
                  (uint32_t)qh4[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0xf) | (int)(((qh >> j) & 1u) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
    }
}

static void dq_q5_0(const uint8_t *b, float *y) { /* d, qh[4], qs[16] */
    float d = rd_f16(b);
    int q[32];
    q5_values(b + 2, b + 6, q);
    for (int j = 0; j < 32; j++) y[j] = (float)(q[j] - 16) * d;
}

static void dq_q5_1(const uint8_t *b, float *y) { /* d, m, qh[4], qs[16] */
    float d = rd_f16(b), m = rd_f16(b + 2);
    int q[32];
    q5_values(b + 4, b + 8, q);
    for (int j = 0; j < 32; j++) y[j] = (float)q[j] * d + m;
}

static void dq_q8_0(const uint8_t *b, float *y) { /* d, qs[32] */
    float d = rd_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

// ----------------------------------------------------------------------------
// K-quants: 256-value super-blocks

static void dq_q2_k(const uint8_t *b, float *y) { /* scales[16], qs[64], d, dmin */
    const uint8_t *sc = b, *q = b + 16;
    float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++, is++) {
                float dl = d * (float)(sc[is] & 0xf), ml = dmin * (float)(sc[is] >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
    }
}

/* Q3_K packs sixteen 6-bit scales in 12 bytes: low nibbles in bytes 0..7
 * (two per byte), high 2-bit pairs in bytes 8..11. */
static int q3k_scale(const uint8_t *s, int i) {
    int lo = i < 8 ? s[i] & 0xf : s[i - 8] >> 4;
    int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | hi << 4) - 32;
}

static void dq_q3_k(const uint8_t *b, float *y) { /* hmask[32], qs[64], scales[12], d */
    const uint8_t *hm = b, *q = b + 32, *sc = b + 96;
    float d = rd_f16(b + 108);
    int is = 0;
    unsigned m = 1;
    for (int n = 0; n < QK_K; n += 128, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int half = 0; half < 2; half++, is++) {
                float dl = d * (float)q3k_scale(sc, is);
                for (int l = 16 * half; l < 16 * half + 16; l++) {
                    int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                    *y++ = dl * (float)v;
                }
            }
        }
    }
}

/* ggml's get_scale_min_k4: eight 6-bit (scale, min) pairs in 12 bytes. */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K and Q5_K share everything but the optional fifth bit plane (qh). */
static void dq_k4_k5(const uint8_t *b, const uint8_t *qh, const uint8_t *ql, float *y) {
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32) {
        for (int nib = 0; nib < 2; nib++) {
            int sc, mn;
            scale_min_k4(is + nib, scales, &sc, &mn);
            float dl = d * (float)sc, ml = dmin * (float)mn;
            unsigned hbit = 1u << (is + nib);
            for (int l = 0; l < 32; l++) {
                int v = nib ? ql[l] >> 4 : ql[l] & 0xf;
                if (qh && (qh[l] & hbit)) v += 16;
                *y++ = dl * (float)v - ml;
            }
        }
    }
}

static void dq_q4_k(const uint8_t *b, float *y) { dq_k4_k5(b, NULL, b + 16, y); }          /* d, dmin, scales[12], qs[128] */
static void dq_q5_k(const uint8_t *b, float *y) { dq_k4_k5(b, b + 16, b + 48, y); }        /* ... qh[32], qs[128] */

static void dq_q6_k(const uint8_t *b, float *y) { /* ql[128], qh[64], scales[16] (int8), d */
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rd_f16(b + 208);
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32;
            int q2 = ((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32;
            int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

// ----------------------------------------------------------------------------
// ternary types: values in {-1, 0, 1} times one fp16 scale

/* TQ1_0 stores five trits per byte as a fixed-point fraction of 243: multiplying
 * by 3^n (mod 256) brings trit n to the top, and (q * 3) >> 8 extracts it. */
static void tq1_group(const uint8_t *qs, int width, int trits, float d, float **y) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    for (int n = 0; n < trits; n++) {
        for (int m = 0; m < width; m++) {
            uint8_t q = (uint8_t)(qs[m] * pow3[n]);
            *(*y)++ = (float)((int)(((uint16_t)q * 3) >> 8) - 1) * d;
        }
    }
}

static void dq_tq1_0(const uint8_t *b, float *y) { /* qs[48], qh[4], d */
    float d = rd_f16(b + 52);
    tq1_group(b, 32, 5, d, &y);
    tq1_group(b + 32, 16, 5, d, &y);
    tq1_group(b + 48, 4, 4, d, &y);
}

static void dq_tq2_0(const uint8_t *b, float *y) { /* qs[64], d */
    float d = rd_f16(b + 64);
    for (int j = 0; j < 64; j += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int m = 0; m < 32; m++) *y++ = (float)(((b[j + m] >> shift) & 3) - 1) * d;
}

// ----------------------------------------------------------------------------
// the type table

static const TypeInfo TYPES[] = {
    [BL_GGML_F32] = {"F32", 1, 4, NULL},
    [BL_GGML_F16] = {"F16", 1, 2, NULL},
    [BL_GGML_Q4_0] = {"Q4_0", 32, 18, dq_q4_0},
    [BL_GGML_Q4_1] = {"Q4_1", 32, 20, dq_q4_1},
    [BL_GGML_Q5_0] = {"Q5_0", 32, 22, dq_q5_0},
    [BL_GGML_Q5_1] = {"Q5_1", 32, 24, dq_q5_1},
    [BL_GGML_Q8_0] = {"Q8_0", 32, 34, dq_q8_0},
    [BL_GGML_Q8_1] = {"Q8_1", 0, 0, NULL},
    [BL_GGML_Q2_K] = {"Q2_K", QK_K, 84, dq_q2_k},
    [BL_GGML_Q3_K] = {"Q3_K", QK_K, 110, dq_q3_k},
    [BL_GGML_Q4_K] = {"Q4_K", QK_K, 144, dq_q4_k},
    [BL_GGML_Q5_K] = {"Q5_K", QK_K, 176, dq_q5_k},
    [BL_GGML_Q6_K] = {"Q6_K", QK_K, 210, dq_q6_k},
    [BL_GGML_Q8_K] = {"Q8_K", 0, 0, NULL},
    [BL_GGML_BF16] = {"BF16", 1, 2, NULL},
    [BL_GGML_TQ1_0] = {"TQ1_0", QK_K, 54, dq_tq1_0},
    [BL_GGML_TQ2_0] = {"TQ2_0", QK_K, 66, dq_tq2_0},
};

static const TypeInfo *type_info(uint32_t type) {
    if (type >= sizeof TYPES / sizeof TYPES[0] || !TYPES[type].name) return NULL;
    return &TYPES[type];
}

const char *bl_ggml_type_name(uint32_t type) {
    const TypeInfo *t = type_info(type);
    return t ? t->name : NULL;
}

size_t bl_ggml_block_size(uint32_t type) {
    const TypeInfo *t = type_info(type);
    return t ? t->block_size : 0;
}

size_t bl_ggml_type_size(uint32_t type) {
    const TypeInfo *t = type_info(type);
    return t ? t->type_size : 0;
}

size_t bl_ggml_row_bytes(uint32_t type, uint64_t n) {
    const TypeInfo *t = type_info(type);
    if (!t || !t->block_size || n % t->block_size) return 0;
    uint64_t blocks = n / t->block_size;
    if (blocks > SIZE_MAX / t->type_size) return 0; /* would not fit in memory anyway */
    return (size_t)blocks * t->type_size;
}

int bl_dequantize(uint32_t type, const void *src, float *dst, uint64_t n, BlError *err) {
    const TypeInfo *t = type_info(type);
    if (!t || !t->block_size) {
        if (t) return bl_fail(err, "cannot dequantize ggml type %s (%u): not supported by bitlab", t->name, type);
        return bl_fail(err, "cannot dequantize unknown ggml type %u", type);
    }
    if (n % t->block_size)
        return bl_fail(err, "cannot dequantize %llu values of type %s: not a multiple of the block size %zu",
                       (unsigned long long)n, t->name, t->block_size);
    const uint8_t *s = src;
    switch (type) {
    case BL_GGML_F32:
        memcpy(dst, s, n * sizeof(float));
        return 0;
    case BL_GGML_F16:
        for (uint64_t i = 0; i < n; i++) dst[i] = rd_f16(s + 2 * i);
        return 0;
    case BL_GGML_BF16:
        for (uint64_t i = 0; i < n; i++) dst[i] = bl_bf16_to_fp32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return 0;
    default:
        for (uint64_t i = 0; i < n / t->block_size; i++)
            t->dequant(s + i * t->type_size, dst + i * t->block_size);
        return 0;
    }
}
