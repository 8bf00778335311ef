/* loss.cuh - the distillation losses, each value and gradient in one call.
 * CPU twins: bl_ce_loss, bl_kl_loss, bl_topk_logprobs, bl_topk_kl_loss,
 * bl_hidden_loss, bl_relation_kl (ops/loss.h), with the same row selection (BlLossRows,
 * whose tokens and mask are DEVICE pointers here), the same "accumulate
 * grad_weight·dloss into the gradient, NULL skips" rule and the same τ²
 * scaling. Logits stay fp32; each row is one block; softmax sums are fp32
 * per block, row losses and their totals double. The value is read back, so
 * each call waits for the stream; a device failure returns NAN (and is
 * reported by the next bl_cuda_sync).
 *
 * topk_logprobs takes the K largest logits by K block-wide arg-max passes
 * (ties to the lower id, as the CPU), O(K·V) per row. */
#ifndef BITLAB_KERNELS_LOSS_CUH
#define BITLAB_KERNELS_LOSS_CUH


#ifdef __cplusplus
extern "C" {
#endif

/* C headers of src/: C linkage inside C++ */
#include "ops/loss.h"

double bl_cuda_ce_loss(float *dlogits, float grad_weight, const float *logits,
                       const BlLossRows *rows);
double bl_cuda_kl_loss(float *dlogits, float grad_weight, const float *s, const float *t,
                       const BlLossRows *rows, float tau);
void bl_cuda_topk_logprobs(int *ids, float *logp, const float *t, int n, int V, int K, float tau);
double bl_cuda_topk_kl_loss(float *dlogits, float grad_weight, const float *s, const int *t_ids,
                            const float *t_logp, int K, const BlLossRows *rows, float tau);
/* hs, ht, dhs: host arrays of device pointers; layer_w host; mask device */
double bl_cuda_hidden_loss(float *const *dhs, float w_cos, float w_mag, const float *const *hs,
                           const float *const *ht, const float *layer_w, int n_layers,
                           const uint8_t *mask, int M, int D, double *mag);
/* bl_relation_kl: s, t [n, T, T], sel, lo [T] device (lo NULL: windows from
 * 0); one block per row, softmaxes and KL in double; s overwritten by the
 * gradient */
double bl_cuda_relation_kl(float *s, const float *t, int n, int T, const uint8_t *sel,
                           const int *lo, float g);

#ifdef __cplusplus
}
#endif

#endif
