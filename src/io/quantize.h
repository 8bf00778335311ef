/* quantize.h - encoding values into ggml block types for the GGUF writer.
 *
 * The exporter's weights are ternary: codes q ∈ {−1, 0, 1} times one
 * per-tensor scale d. Each ggml type below stores them exactly up to the
 * rounding of d to fp16 (the only scale format those blocks have), so the
 * decoded values are q·fp16(d) (F32: q·d), with byte layouts identical to
 * ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c):
 *   TQ2_0  256 values in 66 bytes: qs[64] (four 2-bit codes q+1 per byte,
 *          value j·128 + n·32 + m at bits 2n of byte j·32 + m), d
 *   TQ1_0  256 values in 54 bytes: qs[48] + qh[4] (five / four base-3 digits
 *          q+1 per byte, most significant first, stored as the fixed-point
 *          fraction ceil(x·256/243)), d
 *   Q4_0   32 values in 18 bytes: d, qs[16] (value j low nibble, j+16 high
 *          nibble, value = (nibble − 8)·d, so nibble = q + 8)
 *   Q8_0   32 values in 34 bytes: d, qs[32] (int8 q)
 *   F16    q·fp16(d) per value (fp16 negation is exact)
 *   F32    q·d per value
 * All multi-byte fields are little-endian. */
#ifndef BITLAB_QUANTIZE_H
#define BITLAB_QUANTIZE_H

#include <stdint.h>

#include "core/error.h"

/* Encodes q[n] with scale d as `type` into dst (bl_ggml_row_bytes(type, n)
 * bytes). Fails for a type not listed above, n not a multiple of the block
 * size, a code outside {−1, 0, 1}, or a d that is not finite or overflows
 * fp16. */
int bl_quantize_ternary(uint32_t type, const int8_t *q, float d, uint64_t n, void *dst,
                        BlError *err);

/* x[n] as F32 (copied) or F16 (round to nearest even); fails for other types. */
int bl_quantize_float(uint32_t type, const float *x, uint64_t n, void *dst, BlError *err);

#endif
