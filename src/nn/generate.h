/* generate.h - greedy decoding with a per-layer KV cache.
 *
 * The prompt is run once (prefill), then one token at a time; each step's
 * keys and values are appended to the cache, so a step costs one token's
 * linears plus attention over the cache. The tokens are exactly the argmax of
 * the full (uncached) forward over the growing sequence. */
#ifndef BITLAB_GENERATE_H
#define BITLAB_GENERATE_H

#include "backend/backend.h"
#include "core/error.h"
#include "model/model.h"
#include "nn/forward.h"

/* Called once per produced token; a nonzero return stops generation (e.g.
 * Ctrl-C in the CLI). */
typedef int (*BlTokenCallback)(int token, void *user);

/* Greedy (argmax; ties go to the lowest id) continuation of prompt[n_prompt]
 * for at most max_new tokens. Stops before emitting any of model->stop_tokens:
 * a stop token is neither passed to cb nor stored. out (may be NULL) receives
 * up to max_new tokens, *n_out (may be NULL) their count; cb may be NULL. */
int bl_generate_greedy(const BlModel *m, const BlBackend *be, const int *prompt, int n_prompt,
                       int max_new, BlTokenCallback cb, void *user, int *out, int *n_out,
                       BlError *err);

/* The same decoder in student mode: every forward state it builds runs with
 * `student` (NULL: the teacher, i.e. bl_generate_greedy). */
int bl_generate_greedy_hooked(const BlModel *m, const BlBackend *be, const BlStudentHook *student,
                              const int *prompt, int n_prompt, int max_new, BlTokenCallback cb,
                              void *user, int *out, int *n_out, BlError *err);

/* argmax of x[n], the lowest index on ties */
int bl_argmax(const float *x, int n);

#endif
