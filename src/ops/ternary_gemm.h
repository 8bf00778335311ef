/* ternary_gemm.h - the student's exact integer linear on the CPU, the twin of
 * kernels/ternary_gemm.cu: at λ = 1 with 8- or 4-bit activations
 *   y[m,n] = (float)acc[m,n] / (sx[m]·sw) (+ bias[n]),
 *   acc[m,n] = Σ_k q[m,k]·t[n,k]   (int32, exact)
 * with q, sx the levels and scales of bl_actq (q/sx is bl_actq's value, bit
 * for bit) and t, sw those of bl_wq_int8. The sum is an integer, so every
 * kernel, thread count and blocking gives the same bits.
 *
 * The sum runs on one of three kernels, picked at run time from the CPU's
 * features: AVX-512 VNNI (vpdpbusd on zmm), AVX-VNNI (the same on ymm), or
 * plain C. vpdpbusd multiplies unsigned by signed bytes, so the weights are
 * packed as t+1 ∈ {0, 1, 2} and each row subtracts Σ_k q[m,k]:
 * Σ (t+1)·q − Σ q = Σ t·q, exact in int32 (|acc| ≤ 128·K). */
#ifndef BITLAB_TERNARY_GEMM_H
#define BITLAB_TERNARY_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "ops/weff.h"

typedef enum {
    BL_INT8_C,          /* "c" */
    BL_INT8_AVX2VNNI,   /* "avx2vnni": AVX-VNNI, 256-bit */
    BL_INT8_AVX512VNNI, /* "avx512vnni" */
    BL_INT8_KERNELS
} BlInt8Kernel;

const char *bl_int8_kernel_name(BlInt8Kernel k);
/* this CPU (and OS) can execute k */
bool bl_int8_kernel_supported(BlInt8Kernel k);
/* The kernel products use: $BITLAB_INT8_KERNEL (c, avx2vnni, avx512vnni)
 * when set and non-empty, else the fastest supported. Fails for an unknown
 * name or a kernel this CPU cannot execute. Read at every call. */
int bl_int8_kernel_select(BlInt8Kernel *k, BlError *err);

/* Rows per micro-tile and columns per packed weight block: the shapes are
 * padded to them (rows of zero levels, columns of zero weights). */
enum { BL_TG_MR = 6, BL_TG_NB = 64 };

/* Quantised activations of x[M, K]: K padded with zero levels to Kp (a
 * multiple of 4, whole vpdpbusd groups), M to Mp (whole micro-tiles). */
typedef struct {
    int M, K, Mp, Kp;
    int8_t *q;       /* [Mp][Kp] */
    int32_t *rowsum; /* [Mp] Σ_k q[m,k] */
    float *scale;    /* [M] sx */
} BlActsI8;

/* Ternary weights of W[N, K], packed once per product in blocks of 64
 * columns: w[((b·Kp/4 + g)·64 + j)·4 + i] = t[64b + j, 4g + i] + 1, 0 in
 * the padding (Np a multiple of 64), so that one 64-byte load is 16 columns
 * × 4 k, one vpdpbusd operand. */
typedef struct {
    int N, K, Np, Kp;
    uint8_t *w; /* [Np/64][Kp/4][64][4] */
    float scale; /* sw */
} BlTernaryPacked;

/* Owned buffers for one shape (64-byte aligned); freeing a zeroed struct
 * does nothing. */
int bl_acts_i8_alloc(BlActsI8 *a, int M, int K, BlError *err);
void bl_acts_i8_free(BlActsI8 *a);
int bl_ternary_packed_alloc(BlTernaryPacked *p, int N, int K, BlError *err);
void bl_ternary_packed_free(BlTernaryPacked *p);

/* a (sized for x[a->M, a->K]) = bl_actq's levels and scales of x; bits 8
 * or 4, else err. */
int bl_actq_i8(BlActsI8 *a, const float *x, int bits, BlError *err);
/* p (sized for w[p->N, p->K]) = bl_wq_int8's ternary of w, packed, given
 * s = bl_wq_scale(w) (which bl_weff_merge returns). */
void bl_ternary_pack(BlTernaryPacked *p, const float *w, float s);

/* acc[a->M, w->N] = Σ_k q·t on kernel k (a->K == w->K); fails only when the
 * CPU cannot execute k. */
int bl_int8_gemm(BlInt8Kernel k, int32_t *acc, const BlActsI8 *a, const BlTernaryPacked *w,
                 BlError *err);
/* y[a->M, w->N] = (float)acc / (sx[m]·sw) (+ bias[n]; bias may be NULL),
 * the epilogue fused into the kernel's stores. */
int bl_int8_gemm_scaled(BlInt8Kernel k, float *y, const float *bias, const BlActsI8 *a,
                        const BlTernaryPacked *w, BlError *err);

/* The whole product y[M, out] = actq(x[M, in])·wq(merged)ᵀ (+ bias), merged
 * = W + B_cat·A_cat + dense as bl_weff_merge forms it (W itself without
 * adapters or dense), on the selected kernel. Its scratch (the merged fp32
 * weight, the activations and the packed weights of the largest product so
 * far) is kept for the next call; calls that overlap in time get their own.
 * Fails for bits other than 8 or 4, a bad $BITLAB_INT8_KERNEL, or no
 * memory. */
int bl_ternary_linear(float *y, const float *x, const BlMergeSpec *w, const float *bias, int M,
                      int bits, BlError *err);

#endif
