/* quants.h - ggml tensor types and their dequantization to fp32.
 *
 * Block layouts follow ggml (ggml-common.h): each quantized type stores
 * fixed-size blocks of `bl_ggml_block_size(type)` values. */
#ifndef BITLAB_QUANTS_H
#define BITLAB_QUANTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

enum {
    BL_GGML_F32 = 0, BL_GGML_F16 = 1, BL_GGML_Q4_0 = 2, BL_GGML_Q4_1 = 3,
    BL_GGML_Q5_0 = 6, BL_GGML_Q5_1 = 7, BL_GGML_Q8_0 = 8, BL_GGML_Q8_1 = 9,
    BL_GGML_Q2_K = 10, BL_GGML_Q3_K = 11, BL_GGML_Q4_K = 12, BL_GGML_Q5_K = 13,
    BL_GGML_Q6_K = 14, BL_GGML_Q8_K = 15, BL_GGML_BF16 = 30,
    BL_GGML_TQ1_0 = 34, BL_GGML_TQ2_0 = 35,
};

/* Name of a ggml type ("Q4_1"), or NULL if unknown to bitlab. */
const char *bl_ggml_type_name(uint32_t type);
/* Values per block and bytes per block; 0 for types bitlab cannot read. */
size_t bl_ggml_block_size(uint32_t type);
size_t bl_ggml_type_size(uint32_t type);
/* Bytes for n values, or 0 if n is not a multiple of the block size or the type is unknown. */
size_t bl_ggml_row_bytes(uint32_t type, uint64_t n);

/* Dequantizes n values (n a multiple of the block size) of the given type.
 * Fails with a clear message for a type bitlab does not support. */
int bl_dequantize(uint32_t type, const void *src, float *dst, uint64_t n, BlError *err);

float bl_fp16_to_fp32(uint16_t h);
uint16_t bl_fp32_to_fp16(float f);
float bl_bf16_to_fp32(uint16_t h);
/* Round to nearest even; NaN stays NaN (quiet), overflow goes to Inf. */
uint16_t bl_fp32_to_bf16(float f);

#endif
