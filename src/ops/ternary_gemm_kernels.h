/* ternary_gemm_kernels.h - the micro-kernels behind bl_int8_gemm
 * (ternary_gemm.h), one per instruction set, each in a file of its own
 * compiled for that set alone (a target attribute), so the rest of the build
 * stays baseline x86-64 and a kernel runs only where the CPU has its
 * instructions. */
#ifndef BITLAB_TERNARY_GEMM_KERNELS_H
#define BITLAB_TERNARY_GEMM_KERNELS_H

#include <stdint.h>

#include "ops/ternary_gemm.h"

/* One micro-tile: BL_TG_MR rows of activations against one packed block of
 * BL_TG_NB columns, over all of K. Every kernel computes the whole tile
 * (the operands are padded with zeros) and stores only rows × cols of it,
 * either the int32 sums or the scaled floats. */
typedef struct {
    const int8_t *q;       /* row 0 of the tile; rows ldq (= Kp) bytes apart */
    int ldq;
    const int32_t *rowsum; /* [BL_TG_MR] Σ_k q of each row */
    const uint8_t *w;      /* the block: [groups][64][4] of t+1, 64-byte aligned */
    int groups;            /* Kp / 4 */
    int rows, cols;        /* what to store: ≤ BL_TG_MR, ≤ BL_TG_NB */
    int ldc;               /* row stride of acc or y */
    int32_t *acc;          /* the sums, or NULL: then */
    float *y;              /* (float)sum / div[r] (+ bias[c]) */
    const float *div;      /* [rows] sx·sw */
    const float *bias;     /* [cols], or NULL */
} BlTgTile;

typedef void (*BlTgTileFn)(const BlTgTile *t);

void bl_tg_tile_c(const BlTgTile *t);
#if defined(__x86_64__) || defined(__i386__)
void bl_tg_tile_avx2vnni(const BlTgTile *t);
void bl_tg_tile_avx512vnni(const BlTgTile *t);
#endif

#endif
