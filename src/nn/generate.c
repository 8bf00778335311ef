/* generate.c - greedy KV-cache decoding on top of the block pieces of
 * nn/forward.h: the same attn_inputs and tail as the batch forward, with
 * attention against the cache instead of within the batch. */
#include "nn/generate.h"

#include <stdlib.h>

#include "nn/forward.h"

int bl_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct {
    BlForwardState fs; /* B = 1, T = capacity, no saved probabilities */
    float *kcache;     /* [n_layers, capacity, kvd] */
    float *vcache;
    float *host_logits; /* [vocab] */
    int *host_pos;      /* [capacity] */
} Decoder;

static void free_decoder(Decoder *d) {
    const BlBackend *be = d->fs.be;
    if (be) {
        if (d->kcache) be->free(d->kcache);
        if (d->vcache) be->free(d->vcache);
    }
    bl_free_forward_state(&d->fs);
    free(d->host_logits);
    free(d->host_pos);
}

static int build_decoder(Decoder *d, const BlModel *m, const BlBackend *be, int capacity,
                         BlError *err) {
    *d = (Decoder){0};
    if (bl_build_forward_state(&d->fs, m, be, 1, capacity, false, err)) return -1;
    size_t cache = (size_t)m->cfg.n_layers * capacity * m->cfg.n_kv_heads * m->cfg.head_dim *
                   sizeof(float);
    if (!(d->kcache = be->alloc(cache, err)) || !(d->vcache = be->alloc(cache, err)) ||
        !(d->host_logits = bl_malloc((size_t)m->cfg.vocab_size * sizeof(float), err)) ||
        !(d->host_pos = bl_malloc((size_t)capacity * sizeof(int), err))) {
        free_decoder(d);
        return bl_fail_prefix(err, "KV cache for %d tokens", capacity);
    }
    return 0;
}

/* Runs tokens[n] at positions pos0.. through every block, appending their
 * keys and values to the cache, and returns the argmax of the last row. */
static int step(Decoder *d, const int *tokens, int n, int pos0, int *next, BlError *err) {
    BlForwardState *s = &d->fs;
    const BlConfig *c = &s->model->cfg;
    const BlBackend *be = s->be;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, layer = (size_t)s->T * kvd;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return bl_fail(err, "generate: token %d is outside the vocab (%d)", tokens[i],
                           c->vocab_size);
        d->host_pos[i] = pos0 + i;
    }
    if (be->upload(s->ids, tokens, (size_t)n * sizeof(int), err) ||
        be->upload(s->pos, d->host_pos, (size_t)n * sizeof(int), err))
        return -1;
    be->embed(s->x, s->model->tok_embd, s->ids, n, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        float *kc = d->kcache + l * layer, *vc = d->vcache + l * layer;
        bl_block_attn_inputs(s, l, n, kc + pos0 * kvd, vc + pos0 * kvd);
        be->attention_kv(s->ao, s->q, kc, vc, n, pos0, c->n_heads, c->n_kv_heads, c->head_dim);
        bl_block_tail(s, l, n);
    }
    bl_forward_logits(s, n - 1, 1);
    if (be->download(d->host_logits, s->logits, (size_t)c->vocab_size * sizeof(float), err))
        return -1;
    *next = bl_argmax(d->host_logits, c->vocab_size);
    return 0;
}

static int is_stop(const BlModel *m, int tok) {
    for (int i = 0; i < m->n_stop_tokens; i++)
        if (m->stop_tokens[i] == tok) return 1;
    return 0;
}

int bl_generate_greedy_hooked(const BlModel *m, const BlBackend *be, const BlStudentHook *student,
                              const int *prompt, int n_prompt, int max_new, BlTokenCallback cb,
                              void *user, int *out, int *n_out, BlError *err) {
    if (n_out) *n_out = 0;
    if (n_prompt <= 0) return bl_fail(err, "generate: empty prompt");
    if (max_new <= 0) return 0;
    Decoder d;
    if (build_decoder(&d, m, be, n_prompt + max_new, err)) return -1;
    d.fs.student = student;
    int tok, n = 0, rc = step(&d, prompt, n_prompt, 0, &tok, err);
    while (rc == 0 && !is_stop(m, tok)) {
        if (out) out[n] = tok;
        n++;
        if ((cb && cb(tok, user)) || n == max_new) break;
        rc = step(&d, &tok, 1, n_prompt + n - 1, &tok, err);
    }
    if (n_out) *n_out = n;
    free_decoder(&d);
    return rc;
}

int bl_generate_greedy(const BlModel *m, const BlBackend *be, const int *prompt, int n_prompt,
                       int max_new, BlTokenCallback cb, void *user, int *out, int *n_out,
                       BlError *err) {
    return bl_generate_greedy_hooked(m, be, NULL, prompt, n_prompt, max_new, cb, user, out, n_out,
                                     err);
}
