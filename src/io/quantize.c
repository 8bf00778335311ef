/* quantize.c - ternary codes and floats into ggml block types (see quantize.h). */
#include "io/quantize.h"

#include <math.h>
#include <string.h>

#include "io/quants.h"

#define QK_K 256

static void put_f16(uint8_t *p, uint16_t h) {
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* -1, 0, 1 -> 0, 1, 2: the unsigned digit every ternary ggml type stores */
static unsigned digit(int8_t q) { return (unsigned)(q + 1); }

// ----------------------------------------------------------------------------
// one block each

static void tq2_0_block(const int8_t *q, uint16_t d, uint8_t *b) {
    for (int j = 0; j < 64; j += 32) /* two halves of 128 values */
        for (int m = 0; m < 32; m++) {
            unsigned v = 0;
            for (int n = 0; n < 4; n++) v |= digit(q[j * 4 + n * 32 + m]) << (2 * n);
            b[j + m] = (uint8_t)v;
        }
    put_f16(b + 64, d);
}

/* k base-3 digits of q[m + n·stride] (n = 0..k−1), most significant first,
 * padded to five digits, as the fraction ceil(x·256/243) that ggml's
 * decoder reads back by multiplying with powers of 3 */
static uint8_t tq1_byte(const int8_t *q, int stride, int k) {
    unsigned v = 0;
    for (int n = 0; n < k; n++) v = v * 3 + digit(q[n * stride]);
    for (int n = k; n < 5; n++) v *= 3;
    return (uint8_t)((v * 256 + 242) / 243);
}

static void tq1_0_block(const int8_t *q, uint16_t d, uint8_t *b) {
    for (int m = 0; m < 32; m++) b[m] = tq1_byte(q + m, 32, 5);            /* values 0..159 */
    for (int m = 0; m < 16; m++) b[32 + m] = tq1_byte(q + 160 + m, 16, 5); /* 160..239 */
    for (int j = 0; j < 4; j++) b[48 + j] = tq1_byte(q + 240 + j, 4, 4);   /* 240..255 */
    put_f16(b + 52, d);
}

static void q4_0_block(const int8_t *q, uint16_t d, uint8_t *b) {
    put_f16(b, d);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)((q[j] + 8) | (q[j + 16] + 8) << 4);
}

static void q8_0_block(const int8_t *q, uint16_t d, uint8_t *b) {
    put_f16(b, d);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)q[j];
}

// ----------------------------------------------------------------------------

int bl_quantize_ternary(uint32_t type, const int8_t *q, float d, uint64_t n, void *dst,
                        BlError *err) {
    const char *name = bl_ggml_type_name(type);
    size_t bs = bl_ggml_block_size(type), ts = bl_ggml_type_size(type);
    void (*block)(const int8_t *, uint16_t, uint8_t *) = NULL;
    switch (type) {
    case BL_GGML_TQ2_0: block = tq2_0_block; break;
    case BL_GGML_TQ1_0: block = tq1_0_block; break;
    case BL_GGML_Q4_0: block = q4_0_block; break;
    case BL_GGML_Q8_0: block = q8_0_block; break;
    case BL_GGML_F16: case BL_GGML_F32: break;
    default:
        return bl_fail(err, "ternary values cannot be stored as ggml type %s (%u)",
                       name ? name : "unknown", type);
    }
    if (n % bs)
        return bl_fail(err, "%llu values are not a multiple of %s's block of %zu",
                       (unsigned long long)n, name, bs);
    for (uint64_t i = 0; i < n; i++)
        if (q[i] < -1 || q[i] > 1)
            return bl_fail(err, "value %llu is %d, not a ternary code (-1, 0, 1)",
                           (unsigned long long)i, q[i]);
    uint16_t h = bl_fp32_to_fp16(d);
    if (!isfinite(d) || (type != BL_GGML_F32 && (h & 0x7c00u) == 0x7c00u))
        return bl_fail(err, "scale %g cannot be stored as fp16", (double)d);
    uint8_t *out = dst;
    if (type == BL_GGML_F32) {
        for (uint64_t i = 0; i < n; i++) {
            float v = (float)q[i] * d;
            memcpy(out + 4 * i, &v, 4); /* host order: GGUF is little-endian, as bitlab's hosts */
        }
    } else if (type == BL_GGML_F16) {
        for (uint64_t i = 0; i < n; i++) put_f16(out + 2 * i, q[i] == 0 ? 0 : q[i] > 0 ? h : (uint16_t)(h ^ 0x8000u));
    } else {
        for (uint64_t i = 0; i < n / bs; i++) block(q + i * bs, h, out + i * ts);
    }
    return 0;
}

int bl_quantize_float(uint32_t type, const float *x, uint64_t n, void *dst, BlError *err) {
    uint8_t *out = dst;
    if (type == BL_GGML_F32) {
        memcpy(dst, x, n * sizeof(float));
        return 0;
    }
    if (type != BL_GGML_F16) {
        const char *name = bl_ggml_type_name(type);
        return bl_fail(err, "floats are exported as F32 or F16, not %s", name ? name : "unknown");
    }
    for (uint64_t i = 0; i < n; i++) put_f16(out + 2 * i, bl_fp32_to_fp16(x[i]));
    return 0;
}
