/* sample.c - batched KV-cache sampling (sample.h), composed from the block
 * pieces of nn/forward.h as generate.c is: prefill is generate.c's step for
 * one row; a decode step runs the live rows' tokens through the linears as
 * one batch and the attention row by row, each over its own cache. */
#include "nn/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/forward.h"
#include "nn/generate.h"

// ----------------------------------------------------------------------------
// the draw

/* splitmix64's finaliser: a bijection that scatters nearby inputs */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double bl_sample_uniform(uint64_t seed, int req, int step) {
    uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ull);
    h = mix64(h ^ ((uint64_t)(uint32_t)req + 0x632be59bd9b4e019ull));
    h = mix64(h ^ ((uint64_t)(uint32_t)step + 0x85157af5ull));
    return (double)(h >> 11) * 0x1.0p-53;
}

size_t bl_sample_scratch_bytes(int vocab) {
    return (size_t)vocab * (sizeof(int) + sizeof(double));
}

/* the comparator's logits (qsort has no context argument) */
static _Thread_local const float *tl_rank_logits;

/* higher logit first, then lower id */
static int by_logit_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    float li = tl_rank_logits[i], lj = tl_rank_logits[j];
    if (li != lj) return li > lj ? -1 : 1;
    return (i > j) - (i < j);
}

static int by_id(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    return (i > j) - (i < j);
}

int bl_sample_token(const float *logits, int vocab, float temperature, float top_p, double u,
                    void *scratch) {
    int best = bl_argmax(logits, vocab);
    if (temperature <= 0.0f) return best;
    double *w = scratch; /* the doubles first: the ints after them stay aligned */
    int *idx = (int *)(w + vocab);
    /* unnormalised probabilities exp((l - max) / T), in double so that no
     * non-zero weight underflows before a token far down the ranking */
    double inv_t = 1.0 / temperature, total = 0.0, mx = logits[best];
    for (int v = 0; v < vocab; v++) total += w[v] = exp(((double)logits[v] - mx) * inv_t);
    int n = 0;
    if (top_p >= 1.0f) {
        for (int v = 0; v < vocab; v++) idx[n++] = v;
    } else {
        /* Only tokens with p >= (1 - top_p) / (vocab - 1) can be in the
         * nucleus: those below it sum to less than 1 - top_p, so the ones
         * above already reach top_p. Sorting just them keeps a draw cheap. */
        double floor_w = vocab > 1 ? (1.0 - top_p) / (vocab - 1) * total : 0.0;
        for (int v = 0; v < vocab; v++)
            if (w[v] >= floor_w) idx[n++] = v;
        tl_rank_logits = logits;
        qsort(idx, (size_t)n, sizeof *idx, by_logit_desc);
        double need = top_p * total, cum = 0.0;
        int kept = 0;
        while (kept < n && cum < need) cum += w[idx[kept++]];
        n = kept > 0 ? kept : 1;
        /* u then walks the nucleus in id order, not rank order: two nearly
         * tied logits that a different rounding ranks the other way then
         * change no draw (only the nucleus boundary is discontinuous) */
        qsort(idx, (size_t)n, sizeof *idx, by_id);
    }
    double mass = 0.0;
    for (int i = 0; i < n; i++) mass += w[idx[i]];
    double target = u * mass, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += w[idx[i]];
        if (target < cum) return idx[i];
    }
    return idx[n - 1]; /* u·mass rounded up to the whole mass */
}

// ----------------------------------------------------------------------------
// the slots

typedef struct {
    int req;     /* request decoded in this slot, -1: free */
    int n_out;   /* tokens produced so far */
    int pos;     /* position of the next token fed (prompt + answer so far) */
    int next;    /* the token to feed at the next decode step */
    float *kc, *vc; /* [n_layers, capacity, kvd] backend memory */
} Slot;

typedef struct {
    const BlModel *m;
    const BlBackend *be;
    const BlSampleOptions *opt;
    BlForwardState fs; /* B = 1, T = max(longest prompt, batch), logits for batch rows */
    Slot *slots;
    int capacity;      /* cache positions per slot */
    float *host_logits; /* [batch, vocab] */
    int *host_ids, *host_pos; /* [max(T, batch)] */
    void *scratch;
    int *out, *n_out;
    int stopped;       /* the observer asked to stop */
    BlSampleStats st;
} Sampler;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void free_sampler(Sampler *s) {
    const BlBackend *be = s->be;
    for (int i = 0; s->slots && i < s->opt->batch; i++) {
        if (s->slots[i].kc) be->free(s->slots[i].kc);
        if (s->slots[i].vc) be->free(s->slots[i].vc);
    }
    free(s->slots);
    bl_free_forward_state(&s->fs);
    free(s->host_logits);
    free(s->host_ids);
    free(s->host_pos);
    free(s->scratch);
}

static int build_sampler(Sampler *s, int longest_prompt, BlError *err) {
    const BlConfig *c = &s->m->cfg;
    int B = s->opt->batch, T = longest_prompt > B ? longest_prompt : B;
    s->capacity = longest_prompt + s->opt->max_new;
    size_t cache = (size_t)c->n_layers * s->capacity * c->n_kv_heads * c->head_dim * sizeof(float);
    if (bl_build_forward_state_rows(&s->fs, s->m, s->be, 1, T, false, B, err)) return -1;
    if (!(s->slots = bl_calloc((size_t)B, sizeof *s->slots, err)) ||
        !(s->host_logits = bl_malloc((size_t)B * c->vocab_size * sizeof(float), err)) ||
        !(s->host_ids = bl_malloc((size_t)T * sizeof(int), err)) ||
        !(s->host_pos = bl_malloc((size_t)T * sizeof(int), err)) ||
        !(s->scratch = bl_malloc(bl_sample_scratch_bytes(c->vocab_size), err)))
        return -1;
    for (int i = 0; i < B; i++) {
        s->slots[i].req = -1;
        if (!(s->slots[i].kc = s->be->alloc(cache, err)) ||
            !(s->slots[i].vc = s->be->alloc(cache, err)))
            return bl_fail_prefix(err, "sample: KV cache of row %d (%d positions)", i,
                                  s->capacity);
    }
    return 0;
}

static int is_stop(const BlModel *m, int tok) {
    for (int i = 0; i < m->n_stop_tokens; i++)
        if (m->stop_tokens[i] == tok) return 1;
    return 0;
}

/* Draws slot's next token from logits; returns 1 while the row goes on. */
static int take_draw(Sampler *s, Slot *sl, const float *logits) {
    const BlSampleOptions *o = s->opt;
    int V = s->m->cfg.vocab_size;
    int tok = bl_sample_token(logits, V, o->temperature, o->top_p,
                              bl_sample_uniform(o->seed, sl->req, sl->n_out), s->scratch);
    if (o->observe && o->observe(o->user, sl->req, sl->n_out, tok, logits, V)) s->stopped = 1;
    if (is_stop(s->m, tok)) return 0;
    s->out[(size_t)sl->req * o->max_new + sl->n_out++] = tok;
    s->n_out[sl->req] = sl->n_out;
    s->st.tokens++;
    sl->next = tok;
    return sl->n_out < o->max_new && !s->stopped;
}

/* One row's prompt through every block into its slot's cache (generate.c's
 * step at pos0 = 0), then its first draw. */
static int prefill(Sampler *s, Slot *sl, int req, const int *prompt, int n, BlError *err) {
    BlForwardState *f = &s->fs;
    const BlConfig *c = &s->m->cfg;
    const BlBackend *be = s->be;
    size_t layer = (size_t)s->capacity * c->n_kv_heads * c->head_dim;
    for (int i = 0; i < n; i++) s->host_pos[i] = i;
    if (be->upload(f->ids, prompt, (size_t)n * sizeof(int), err) ||
        be->upload(f->pos, s->host_pos, (size_t)n * sizeof(int), err))
        return -1;
    be->embed(f->x, s->m->tok_embd, f->ids, n, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        float *kc = sl->kc + l * layer, *vc = sl->vc + l * layer;
        bl_block_attn_inputs(f, l, n, kc, vc);
        be->attention_kv(f->ao, f->q, kc, vc, n, 0, c->n_heads, c->n_kv_heads, c->head_dim);
        bl_block_tail(f, l, n);
    }
    bl_forward_logits(f, n - 1, 1);
    if (be->download(s->host_logits, f->logits, (size_t)c->vocab_size * sizeof(float), err))
        return -1;
    *sl = (Slot){.req = req, .pos = n, .kc = sl->kc, .vc = sl->vc};
    s->st.prompt_tokens += n;
    if (!take_draw(s, sl, s->host_logits)) sl->req = -1;
    return 0;
}

/* One token for each of the L live slots live[0..L): the linears as one
 * M = L batch, the attention per row over its own cache. */
static int decode_step(Sampler *s, Slot *const *live, int L, BlError *err) {
    BlForwardState *f = &s->fs;
    const BlConfig *c = &s->m->cfg;
    const BlBackend *be = s->be;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    size_t layer = (size_t)s->capacity * kvd;
    for (int r = 0; r < L; r++) {
        s->host_ids[r] = live[r]->next;
        s->host_pos[r] = live[r]->pos;
    }
    if (be->upload(f->ids, s->host_ids, (size_t)L * sizeof(int), err) ||
        be->upload(f->pos, s->host_pos, (size_t)L * sizeof(int), err))
        return -1;
    be->embed(f->x, s->m->tok_embd, f->ids, L, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        bl_block_attn_inputs(f, l, L, f->k, f->v);
        for (int r = 0; r < L; r++) {
            float *kc = live[r]->kc + l * layer, *vc = live[r]->vc + l * layer;
            int p = live[r]->pos;
            be->copy2d(kc + (size_t)p * kvd, kvd, f->k + (size_t)r * kvd, kvd, 1, kvd);
            be->copy2d(vc + (size_t)p * kvd, kvd, f->v + (size_t)r * kvd, kvd, 1, kvd);
            be->attention_kv(f->ao + (size_t)r * qd, f->q + (size_t)r * qd, kc, vc, 1, p,
                             c->n_heads, c->n_kv_heads, c->head_dim);
        }
        bl_block_tail(f, l, L);
    }
    bl_forward_logits(f, 0, L);
    if (be->download(s->host_logits, f->logits, (size_t)L * c->vocab_size * sizeof(float), err))
        return -1;
    s->st.steps++;
    s->st.row_steps += L;
    for (int r = 0; r < L; r++) {
        live[r]->pos++;
        if (!take_draw(s, live[r], s->host_logits + (size_t)r * c->vocab_size)) live[r]->req = -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the request loop

static int check_request(const BlModel *m, const BlSampleOptions *o, const int *const *prompts,
                         const int *n_prompt, int n_req, int *longest, BlError *err) {
    if (n_req < 0) return bl_fail(err, "sample: %d requests", n_req);
    if (o->batch < 1) return bl_fail(err, "sample: batch %d must be at least 1", o->batch);
    if (o->max_new < 1) return bl_fail(err, "sample: max_new %d must be at least 1", o->max_new);
    if (!(o->temperature >= 0.0f && isfinite(o->temperature)))
        return bl_fail(err, "sample: temperature %g must be 0 (greedy) or a positive number",
                       (double)o->temperature);
    if (!(o->top_p > 0.0f && o->top_p <= 1.0f))
        return bl_fail(err, "sample: top_p %g must be in (0, 1]", (double)o->top_p);
    int ctx = m->cfg.max_seq_len;
    *longest = 0;
    for (int i = 0; i < n_req; i++) {
        if (n_prompt[i] <= 0) return bl_fail(err, "sample: prompt %d is empty", i + 1);
        if (ctx > 0 && (long)n_prompt[i] + o->max_new > ctx)
            return bl_fail(err,
                           "sample: prompt %d (%d tokens) + max_new %d exceed the model's "
                           "context of %d",
                           i + 1, n_prompt[i], o->max_new, ctx);
        for (int t = 0; t < n_prompt[i]; t++)
            if (prompts[i][t] < 0 || prompts[i][t] >= m->cfg.vocab_size)
                return bl_fail(err, "sample: prompt %d's token %d (%d) is outside the vocab (%d)",
                               i + 1, t + 1, prompts[i][t], m->cfg.vocab_size);
        if (n_prompt[i] > *longest) *longest = n_prompt[i];
    }
    return 0;
}

int bl_sample(const BlModel *m, const BlBackend *be, const int *const *prompts,
              const int *n_prompt, int n_req, const BlSampleOptions *opt, int *out, int *n_out,
              BlSampleStats *stats, BlError *err) {
    if (stats) *stats = (BlSampleStats){0};
    int longest = 0;
    if (check_request(m, opt, prompts, n_prompt, n_req, &longest, err)) return -1;
    for (int i = 0; i < n_req; i++) n_out[i] = 0;
    if (n_req == 0) return 0;
    Sampler s = {.m = m, .be = be, .opt = opt, .out = out, .n_out = n_out};
    int B = opt->batch < n_req ? opt->batch : n_req;
    BlSampleOptions o = *opt;
    o.batch = B; /* no slot is built for a row that can never be filled */
    s.opt = &o;
    int rc = build_sampler(&s, longest, err);
    Slot **live = rc ? NULL : bl_malloc((size_t)B * sizeof *live, err);
    if (!live) rc = -1;
    int next_req = 0;
    while (rc == 0 && !s.stopped) {
        double t0 = now_s();
        for (int i = 0; i < B && next_req < n_req && !s.stopped && rc == 0; i++)
            while (s.slots[i].req < 0 && next_req < n_req && !s.stopped && rc == 0) {
                rc = prefill(&s, &s.slots[i], next_req, prompts[next_req], n_prompt[next_req],
                             err);
                next_req++;
            }
        double t1 = now_s();
        s.st.prefill_s += t1 - t0;
        int L = 0;
        for (int i = 0; i < B; i++)
            if (s.slots[i].req >= 0) live[L++] = &s.slots[i];
        if (rc || L == 0 || s.stopped) break;
        rc = decode_step(&s, live, L, err);
        s.st.decode_s += now_s() - t1;
    }
    if (rc == 0) rc = be->sync(err);
    if (stats) *stats = s.st;
    free(live);
    free_sampler(&s);
    return rc;
}
