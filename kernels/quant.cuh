/* quant.cuh - the student's quantisers. CPU twins: bl_actq_blend (ops/quant.h)
 * and bl_bitlinear_weff (train/bitlinear.h: LoRA merge then bl_weff).
 *
 * actq: one block per row; the absmax is the largest sign-cleared bit
 * pattern and the rounding is roundf (half away from zero), so the result is
 * bit-identical to the CPU's.
 *
 * bitlinear_weff is one fused kernel run twice over 32×32 tiles: the LoRA
 * stack (every adapter, frozen or not, concatenated into one low-rank
 * product B_cat·A_cat with α/r folded into B_cat) is merged onto W (+ dense
 * ΔW) on the fly in shared-memory tiles; pass 1 reduces Σ|W+ΔW| (fp32 per
 * tile, double across tiles) into s = 1/max(mean, 1e-5); pass 2 recomputes
 * the merge and writes Weff = (1−λ)(W+ΔW) + λ·clamp(round((W+ΔW)·s), −1, 1)/s
 * once. W may be a bf16 weight handle; adapters and Weff are fp32. */
#ifndef BITLAB_KERNELS_QUANT_CUH
#define BITLAB_KERNELS_QUANT_CUH


#ifdef __cplusplus
extern "C" {
#endif

/* C headers of src/: C linkage inside C++ */
#include "core/error.h"

/* The weight of one BitLinear as the fused kernels read it (device pointers). */
typedef struct {
    const float *w;      /* [out, in] frozen weight (fp32 or a bf16 handle) */
    const float *dense;  /* [out, in] dense ΔW, or NULL */
    const float *lora_b; /* [out, rank]: the adapters' B side by side, each times its α/r */
    const float *lora_a; /* [rank, in]: the adapters' A stacked */
    int rank;            /* Σ r_i; 0 = no adapters */
    int out, in;
    float lambda;
} BlCudaWeff;

/* xq[M,D] = (1−λ)·x + λ·actq(x) at 4/8 bits (16 copies; λ = 1 is actq
 * itself, bl_actq_blend); scale[M] (may be NULL) gets actq's s. Fails (err)
 * for another width. xq may alias x. */
int bl_cuda_actq(float *xq, float *scale, const float *x, int M, int D, int bits, float lambda,
                 BlError *err);

/* weff[out·in] as described above. */
void bl_cuda_bitlinear_weff(float *weff, const BlCudaWeff *spec);

#ifdef __cplusplus
}
#endif

#endif
