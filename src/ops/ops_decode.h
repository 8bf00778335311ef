/* ops_decode.h - the one inference-only op beyond ops/ops.h: attention of new
 * queries against a KV cache, used by the greedy decoder for the prompt
 * (prefill) and for each generated token. It has no backward. */
#ifndef BITLAB_OPS_DECODE_H
#define BITLAB_OPS_DECODE_H

/* out[n, nh·hd] for queries q[n, nh·hd] at positions pos0..pos0+n-1 against
 * the first pos0+n rows of kcache/vcache[.., nkv·hd] (which already hold the
 * new keys), causal, scale 1/sqrt(hd). */
void bl_attention_kv(float *out, const float *q, const float *kcache, const float *vcache, int n,
                     int pos0, int nh, int nkv, int hd);

#endif
