/* sample.h - batched teacher sampling with one KV cache per row.
 *
 * n_req requests (each a prompt; a BOS-only request is the prompt {bos}) are
 * decoded `batch` rows at a time. Each row owns a slot: a KV cache of its
 * own and its own length. A row's prompt is prefilled alone (one M = n_prompt
 * forward into the slot's cache); then every decode step runs the live rows'
 * next tokens as ONE M = live-rows forward through the linears (the batched
 * GEMMs are where batch 16 beats batch 1) with attention per row over that
 * row's cache. A row that stops (a model stop token, max_new) frees its slot
 * and the next pending request is prefilled into it (continuous batching), so
 * the batch stays full while requests remain.
 *
 * Sampling: temperature 0 is greedy (argmax, lowest id on ties:
 * bl_generate_greedy's tokens); otherwise softmax(logits / temperature)
 * restricted to the top-p nucleus. Each draw's uniform number is a hash of
 * (seed, request index, step) alone, so a request's samples do not depend on
 * the batch size or on the other requests (up to the float rounding of a
 * batched GEMM against a single-row one, which can flip a near-tie). */
#ifndef BITLAB_SAMPLE_H
#define BITLAB_SAMPLE_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"

/* Sees each draw of request `req` at `step` (0-based: the step-th token of
 * its answer): the logits [vocab] (host) it was drawn from and the token
 * (which may be a stop token: the row then ends without it). A nonzero return
 * stops the whole call (e.g. Ctrl-C); bl_sample then returns 0 with the
 * tokens so far. */
typedef int (*BlSampleObserver)(void *user, int req, int step, int token, const float *logits,
                                int vocab);

typedef struct {
    int max_new;       /* tokens per answer at most, >= 1 */
    int batch;         /* rows decoded together, >= 1 */
    float temperature; /* 0 (greedy) or > 0, finite */
    float top_p;       /* nucleus mass in (0, 1]; 1 keeps every token */
    uint64_t seed;
    BlSampleObserver observe; /* may be NULL */
    void *user;
} BlSampleOptions;

typedef struct {
    long long prompt_tokens; /* prefilled */
    long long tokens;        /* generated (stop tokens not counted) */
    long long steps;         /* batched decode steps */
    long long row_steps;     /* live rows summed over those steps */
    double prefill_s, decode_s;
} BlSampleStats;

/* Samples answers for prompts[i][n_prompt[i]], i < n_req. out[i·max_new ..]
 * receives answer i (stop token excluded), n_out[i] its length; stats may be
 * NULL. Errors name the parameter: batch, max_new, temperature, top_p, an
 * empty prompt, an out-of-vocab token, or a prompt + max_new beyond the
 * model's context. */
int bl_sample(const BlModel *m, const BlBackend *be, const int *const *prompts,
              const int *n_prompt, int n_req, const BlSampleOptions *opt, int *out, int *n_out,
              BlSampleStats *stats, BlError *err);

/* The draw itself: the token for logits[vocab] given the uniform u in [0, 1)
 * (temperature 0: argmax, u unused). Tokens are ranked by logit (ties: lower
 * id first); the nucleus is the shortest prefix of that ranking whose
 * probability reaches top_p, and u picks within it by cumulative probability
 * taken in id order (so a near-tie ranked either way draws the same token).
 * scratch holds vocab ints and vocab doubles (bl_sample_scratch_bytes). */
int bl_sample_token(const float *logits, int vocab, float temperature, float top_p, double u,
                    void *scratch);
size_t bl_sample_scratch_bytes(int vocab);

/* The uniform in [0, 1) of request req's step-th draw under seed. */
double bl_sample_uniform(uint64_t seed, int req, int step);

#endif
