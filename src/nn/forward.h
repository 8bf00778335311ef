/* forward.h - the teacher forward of a Llama-family model for a right-padded
 * batch: y = x·Wᵀ with the frozen weights, every op through a BlBackend.
 *
 * The block is split in two halves around attention so that the batch
 * forward (nn/forward.c) and the KV-cache decoder (nn/generate.c) share every
 * line but the attention call:
 *   attn_inputs: xn = rmsnorm(x); q,k,v = linears(xn); rope(q, k)
 *   attention:   ao = attn(q, k, v)         (batch: bl_attention, decode: KV cache)
 *   tail:        x += O(ao); xn = rmsnorm(x); x += down(swiglu(gate_up(xn)))
 * Every block linear goes through bl_linear_apply, the one place student mode
 * substitutes quantised weights + LoRA (through a BlStudentHook). */
#ifndef BITLAB_FORWARD_H
#define BITLAB_FORWARD_H

#include <stdbool.h>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"

/* Student mode for the block (eval/ fills it in over a BlDeviceStudent; nn/
 * knows no quantiser): every block linear becomes linear(ctx, ...), and
 * o_proj's output is RMSNormed with post_attn_norm[l] before the residual
 * add, as in the student's training forward. x and y are the state's
 * buffers, i.e. memory of the state's backend, and so are the norm weights:
 * the hook computes with that backend's ops only, so the student runs on
 * any backend the teacher does. linear cannot fail (ops queue; a device
 * failure shows at the forward's sync): a hook that can keeps its own error
 * for its caller to read after the forward. */
typedef struct BlStudentHook {
    void (*linear)(void *ctx, int l, BlLinearKind kind, const float *x, float *y, int M);
    void *ctx;
    const float *const *post_attn_norm; /* host array [n_layers] of backend pointers to [dim]
                                         * weights, or NULL */
} BlStudentHook;

/* Scratch for up to B sequences of T tokens (M = B·T rows), in backend
 * memory. Plain struct: the buffers are the activations of the block being
 * computed, overwritten layer after layer. */
typedef struct BlForwardState {
    const BlModel *model;
    const BlBackend *be;
    int B, T;      /* capacity */
    int *ids;      /* [M] token ids, padding replaced by 0 */
    int *pos;      /* [M] positions (within each document of a packed row) */
    int *lens;     /* [B] */
    int *doc_start; /* [M] the packed batch's document starts (see bl_forward) */
    bool packed;   /* the batch in the state is packed: attention reads doc_start */
    float *x;      /* [M, dim] residual stream */
    float *xn;     /* [M, dim] normed input of the current half-block */
    float *qkv;    /* [M, qd + 2·kvd] fused projection (Phi-3 only, else NULL) */
    float *q;      /* [M, qd] */
    float *k, *v;  /* [M, kvd] */
    float *ao;     /* [M, qd] attention output */
    float *h;      /* [M, dim] projection output before a residual add */
    float *gu;     /* [M, 2H]: gate then up (fused: per row; separate: per block) */
    float *act;    /* [M, H] swiglu output */
    float *att;    /* [B, nh, T, T] probabilities, or NULL (see keep_att) */
    float *logits; /* [logits_rows, vocab] */
    int logits_rows; /* rows the logits buffer holds (B·T unless built smaller) */
    int *host_ids; /* [M] host staging for ids/pos */
    const BlStudentHook *student; /* NULL (as built): the teacher */
} BlForwardState;

/* keep_att allocates the attention probabilities [B, nh, T, T]: the batch
 * attention then runs as whole-sequence GEMMs (and a trainer can keep them).
 * Without it attention works in blocks on the stack. */
int bl_build_forward_state(BlForwardState *s, const BlModel *m, const BlBackend *be, int B, int T,
                           bool keep_att, BlError *err);
/* The same with a logits buffer of logits_rows rows (1..B·T): logits are then
 * formed logits_rows rows at a time (a trainer forms its chunks' only). */
int bl_build_forward_state_rows(BlForwardState *s, const BlModel *m, const BlBackend *be, int B,
                                int T, bool keep_att, int logits_rows, BlError *err);
void bl_free_forward_state(BlForwardState *s);
/* The bytes bl_build_forward_state_rows takes for that shape (backend and host). */
size_t bl_forward_state_bytes(const BlConfig *c, int B, int T, bool keep_att, int logits_rows);

/* tokens[B·T] (host; padded entries ignored), lens[B] (host, 0..T),
 * doc_start[B·T] (host) or NULL: packed rows (several documents a row,
 * bl_attention's contract, checked): positions restart at 0 with each
 * document and attention stays within it, so every document's outputs are
 * those it would have as a row of its own. Writes
 * logits [B·T, vocab] and, for each layer l with hidden[l] != NULL, the
 * block's output hidden state [B·T, dim] (after the MLP residual add) into
 * host memory; either may be NULL. Values at padded rows are unspecified. */
int bl_forward(BlForwardState *s, const int *tokens, const int *lens, const int *doc_start, int B,
               int T, float *logits, float **hidden, BlError *err);

/* ---- the pieces, for the decoder and the trainer ----------------------- */

/* y[M, out] = x[M, in]·Wᵀ (+ b) for layer l's linear `kind` (the student's
 * linear with s->student) */
void bl_linear_apply(const BlForwardState *s, int l, BlLinearKind kind, const float *x, float *y,
                     int M);
/* From s->x: s->q, and k/v written to the given [M, kvd] rows (s->k/s->v, or
 * KV-cache rows); q and k rotated at positions s->pos. */
void bl_block_attn_inputs(const BlForwardState *s, int l, int M, float *k, float *v);
/* From s->ao: the O projection (post-attention norm in student mode),
 * residual add and the MLP half, into s->x. */
void bl_block_tail(const BlForwardState *s, int l, int M);
/* pos[B·T]: t − doc_start[b·T + t] at the valid tokens of a packed batch,
 * else t (the RoPE positions of bl_forward and the trainer) */
void bl_positions(int *pos, const int *doc_start, const int *lens, int B, int T);
/* The state's doc_start for the attention ops: NULL unless the batch is packed. */
static inline const int *bl_forward_doc_start(const BlForwardState *s) {
    return s->packed ? s->doc_start : NULL;
}
/* s->logits[0..M) = lm_head(rmsnorm(s->x rows row0..row0+M)), M <= logits_rows */
void bl_forward_logits(const BlForwardState *s, int row0, int M);

/* 2·M·N·K summed over every matmul of a forward of M tokens, lm head
 * included (the GEMM work a benchmark divides by time). */
double bl_forward_matmul_flops(const BlConfig *c, long long M);

typedef struct {
    int B, T, reps;
    double seconds;        /* per forward (logits included), best of reps */
    double tokens_per_s;   /* B·T / seconds */
    double gemm_gflops;    /* bl_forward_matmul_flops / seconds / 1e9 */
} BlForwardBench;

/* Times reps forwards (after one warm-up) of B full sequences of T
 * pseudo-random tokens. For `bitlab bench forward` and bench/. */
int bl_bench_forward(const BlModel *m, const BlBackend *be, int B, int T, int reps,
                     BlForwardBench *out, BlError *err);

#endif
