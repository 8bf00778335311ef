/* attention.cuh - causal GQA attention with right padding, its backward, and
 * attention against a KV cache. CPU twins: bl_attention,
 * bl_attention_backward (ops/ops.h) and bl_attention_kv (ops/ops_decode.h):
 * same layouts (q [B·T, nh·hd], k/v [B·T, nkv·hd], head h reads kv head
 * h / (nh/nkv)), scale 1/√hd, padded query rows → zeros, att (NULL skips)
 * [B, nh, T, T] with zeros outside the causal valid part; doc_start (NULL:
 * one document per row) confines each query to its document's keys.
 *
 * Fused, one block per (query row, head): scores in shared memory (up to
 * ~57k keys on sm_90), softmax in fp32, then P·V; no [T, T] matrix is needed
 * unless att is asked for. The backward forms dS per query row, then
 * dK/dV per key row from dS and P (no atomics, deterministic). fp32 inside. */
#ifndef BITLAB_KERNELS_ATTENTION_CUH
#define BITLAB_KERNELS_ATTENTION_CUH

#ifdef __cplusplus
extern "C" {
#endif

void bl_cuda_attention(float *out, float *att, const float *q, const float *k, const float *v,
                       const int *lens, const int *doc_start, int B, int T, int nh, int nkv,
                       int hd);
/* att is required (the forward's probabilities) */
void bl_cuda_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                const float *att, const float *q, const float *k, const float *v,
                                const int *lens, const int *doc_start, int B, int T, int nh,
                                int nkv, int hd);
void bl_cuda_attention_kv(float *out, const float *q, const float *kcache, const float *vcache,
                          int n, int pos0, int nh, int nkv, int hd);

#ifdef __cplusplus
}
#endif

#endif
