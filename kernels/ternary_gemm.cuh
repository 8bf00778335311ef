/* ternary_gemm.cuh - the student's fast path at λ = 1: int8 activations ×
 * ternary int8 weights → int32, scaled once. CPU twin: bl_actq +
 * bl_bitlinear_weff (λ = 1) + bl_matmul, i.e.
 *   y[m, n] = (Σ_k qx[m,k]·qw[n,k]) / (sx[m]·sw) (+ bias[n])
 * with qx = clamp(round(x·sx), −Q−1, Q), sx per row (actq), and qw the
 * absmean ternary of W+ΔW (the fused kernel of quant.cuh writes it as int8).
 * The GEMM is cuBLASLt's int8 TN kernel (K padded to a multiple of 16 with
 * zeros); when cuBLASLt offers no algorithm for the shape (or with
 * bl_cuda_set_int8_engine(1)) an own tiled __dp4a kernel runs instead. */
#ifndef BITLAB_KERNELS_TERNARY_GEMM_CUH
#define BITLAB_KERNELS_TERNARY_GEMM_CUH

#include "quant.cuh"

#ifdef __cplusplus
extern "C" {
#endif

/* C headers of src/: C linkage inside C++ */
#include "core/error.h"

/* y[M, spec->out] from x[M, spec->in]; spec->lambda must be 1 and bits 8 or
 * 4 (else err, nothing queued). */
int bl_cuda_ternary_matmul(float *y, const float *x, const BlCudaWeff *spec, const float *bias,
                           int M, int bits, BlError *err);

#ifdef __cplusplus
}
#endif

#endif
