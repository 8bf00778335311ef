/* forward.c - the batch teacher forward: embed, n_layers blocks, final norm
 * and lm head, every op through the backend (see forward.h for the block's
 * structure).
 *
 * A ternary student exported by bitlab (cfg.ternary_act_bits 8 or 4) runs
 * as the plain model whose block linears already hold ternary × scale; what
 * it adds is the per-token absmax quantisation of every block linear's input
 * that the student trained with (bl_actq of ops/quant.h, the one definition
 * of it, as the backend's actq: so on any backend). The weights are not
 * quantised again: wq is not idempotent. */
#include "nn/forward.h"

#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>


// ----------------------------------------------------------------------------
// state

/* The state's backend buffers and their sizes: one table for allocation and
 * for bl_forward_state_bytes. */
typedef struct { void **p; size_t bytes; } StateBuf;
enum { STATE_BUFS = 16 };

static void state_bufs(StateBuf bufs[STATE_BUFS], BlForwardState *s, const BlConfig *c, int B,
                       int T, bool keep_att, int logits_rows) {
    size_t M = (size_t)B * T;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t H = (size_t)c->hidden_dim, D = (size_t)c->dim, F = sizeof(float);
    StateBuf t[STATE_BUFS] = {
        {(void **)&s->ids, M * sizeof(int)},
        {(void **)&s->pos, M * sizeof(int)},
        {(void **)&s->lens, (size_t)B * sizeof(int)},
        {(void **)&s->doc_start, M * sizeof(int)},
        {(void **)&s->x, M * D * F},
        {(void **)&s->xn, M * D * F},
        {(void **)&s->q, M * qd * F},
        {(void **)&s->k, M * kvd * F},
        {(void **)&s->v, M * kvd * F},
        {(void **)&s->ao, M * qd * F},
        {(void **)&s->h, M * D * F},
        {(void **)&s->gu, M * 2 * H * F},
        {(void **)&s->act, M * H * F},
        {(void **)&s->logits, (size_t)logits_rows * c->vocab_size * F},
        {(void **)&s->qkv, c->fused_qkv ? M * (qd + 2 * kvd) * F : 0},
        {(void **)&s->att, keep_att ? (size_t)B * c->n_heads * T * T * F : 0},
    };
    memcpy(bufs, t, sizeof t);
}

size_t bl_forward_state_bytes(const BlConfig *c, int B, int T, bool keep_att, int logits_rows) {
    BlForwardState dummy;
    StateBuf bufs[STATE_BUFS];
    state_bufs(bufs, &dummy, c, B, T, keep_att, logits_rows);
    size_t n = (size_t)B * T * sizeof(int); /* host_ids */
    for (int i = 0; i < STATE_BUFS; i++) n += bufs[i].bytes;
    return n;
}

int bl_build_forward_state(BlForwardState *s, const BlModel *m, const BlBackend *be, int B, int T,
                           bool keep_att, BlError *err) {
    return bl_build_forward_state_rows(s, m, be, B, T, keep_att, B * T, err);
}

int bl_build_forward_state_rows(BlForwardState *s, const BlModel *m, const BlBackend *be, int B,
                                int T, bool keep_att, int logits_rows, BlError *err) {
    memset(s, 0, sizeof *s);
    if (B <= 0 || T <= 0) return bl_fail(err, "forward state: bad batch %d x %d", B, T);
    if (logits_rows < 1 || logits_rows > B * T)
        return bl_fail(err, "forward state: %d logits rows is outside 1..%d", logits_rows, B * T);
    const BlConfig *c = &m->cfg;
    s->logits_rows = logits_rows;
    s->model = m;
    s->be = be;
    s->B = B;
    s->T = T;
    StateBuf bufs[STATE_BUFS];
    state_bufs(bufs, s, c, B, T, keep_att, logits_rows);
    for (size_t i = 0; i < STATE_BUFS; i++) {
        if (!bufs[i].bytes) continue;
        if (!(*bufs[i].p = be->alloc(bufs[i].bytes, err))) {
            bl_free_forward_state(s);
            return bl_fail_prefix(err, "forward state for %d x %d tokens", B, T);
        }
    }
    if (!(s->host_ids = bl_malloc((size_t)B * T * sizeof(int), err))) {
        bl_free_forward_state(s);
        return -1;
    }
    return 0;
}

void bl_free_forward_state(BlForwardState *s) {
    if (!s->be) return;
    void *bufs[] = {s->ids, s->pos, s->lens, s->doc_start, s->x,  s->xn,     s->qkv, s->q,
                    s->k,   s->v,   s->ao,   s->h,         s->gu, s->act, s->logits, s->att};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) s->be->free(bufs[i]);
    free(s->host_ids);
    memset(s, 0, sizeof *s);
}

// ----------------------------------------------------------------------------
// the block

/* In place: a block linear's input x[M, D] quantised per token as an
 * exported ternary student's forward needs it (nothing for an ordinary model,
 * nor in student mode, where the hook quantises), with the backend's actq. */
static void exported_student_actq(const BlForwardState *s, float *x, int M, int D) {
    int bits = s->model->cfg.ternary_act_bits;
    if (bits && !s->student) /* bits: 8 or 4, checked at load */
        s->be->actq(x, NULL, x, M, D, bits, 1.0f, NULL); /* packed ternary: λ = 1 */
}

void bl_linear_apply(const BlForwardState *s, int l, BlLinearKind kind, const float *x, float *y,
                     int M) {
    if (s->student) {
        s->student->linear(s->student->ctx, l, kind, x, y, M);
        return;
    }
    const BlLinear *lin = &s->model->layers[l].lin[kind];
    s->be->matmul(y, x, lin->w, lin->b, M, lin->out, lin->in);
}

void bl_block_attn_inputs(const BlForwardState *s, int l, int M, float *k, float *v) {
    const BlConfig *c = &s->model->cfg;
    const BlBackend *be = s->be;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    be->rmsnorm(s->xn, NULL, s->x, s->model->layers[l].attn_norm, M, c->dim, c->norm_eps);
    exported_student_actq(s, s->xn, M, c->dim); /* q, k, v share the quantised input */
    if (c->fused_qkv) {
        int ld = qd + 2 * kvd;
        bl_linear_apply(s, l, BL_LIN_QKV, s->xn, s->qkv, M);
        be->copy2d(s->q, qd, s->qkv, ld, M, qd);
        be->copy2d(k, kvd, s->qkv + qd, ld, M, kvd);
        be->copy2d(v, kvd, s->qkv + qd + kvd, ld, M, kvd);
    } else {
        bl_linear_apply(s, l, BL_LIN_Q, s->xn, s->q, M);
        bl_linear_apply(s, l, BL_LIN_K, s->xn, k, M);
        bl_linear_apply(s, l, BL_LIN_V, s->xn, v, M);
    }
    be->rope(s->q, s->pos, M, c->n_heads, c->head_dim, c->rope_theta, c->rope_interleaved);
    be->rope(k, s->pos, M, c->n_kv_heads, c->head_dim, c->rope_theta, c->rope_interleaved);
}

void bl_block_tail(const BlForwardState *s, int l, int M) {
    const BlConfig *c = &s->model->cfg;
    const BlBackend *be = s->be;
    size_t n = (size_t)M * c->dim;
    int H = c->hidden_dim;
    exported_student_actq(s, s->ao, M, c->n_heads * c->head_dim);
    bl_linear_apply(s, l, BL_LIN_O, s->ao, s->h, M);
    if (s->student && s->student->post_attn_norm) {
        /* xn is free until the MLP norm below overwrites it */
        be->rmsnorm(s->xn, NULL, s->h, s->student->post_attn_norm[l], M, c->dim, c->norm_eps);
        be->add(s->x, s->xn, n);
    } else {
        be->add(s->x, s->h, n);
    }
    be->rmsnorm(s->xn, NULL, s->x, s->model->layers[l].ffn_norm, M, c->dim, c->norm_eps);
    exported_student_actq(s, s->xn, M, c->dim);
    if (c->fused_gate_up) {
        bl_linear_apply(s, l, BL_LIN_GATE_UP, s->xn, s->gu, M);
        be->swiglu(s->act, s->gu, s->gu + H, M, H, 2 * H);
    } else {
        float *up = s->gu + (size_t)M * H;
        bl_linear_apply(s, l, BL_LIN_GATE, s->xn, s->gu, M);
        bl_linear_apply(s, l, BL_LIN_UP, s->xn, up, M);
        be->swiglu(s->act, s->gu, up, M, H, H);
    }
    exported_student_actq(s, s->act, M, H);
    bl_linear_apply(s, l, BL_LIN_DOWN, s->act, s->h, M);
    be->add(s->x, s->h, n);
}

void bl_forward_logits(const BlForwardState *s, int row0, int M) {
    const BlConfig *c = &s->model->cfg;
    s->be->rmsnorm(s->xn, NULL, s->x + (size_t)row0 * c->dim, s->model->out_norm, M, c->dim,
                   c->norm_eps);
    s->be->matmul(s->logits, s->xn, s->model->lm_head, NULL, M, c->vocab_size, c->dim);
}

// ----------------------------------------------------------------------------
// the batch forward

void bl_positions(int *pos, const int *doc_start, const int *lens, int B, int T) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            pos[i] = doc_start && t < lens[b] ? t - doc_start[i] : t;
        }
}

/* Uploads ids (padding → 0, so every row embeds a valid token), positions
 * (0..T-1 per sequence, or per document of a packed row), lens and
 * doc_start, after checking them. */
static int upload_batch(BlForwardState *s, const int *tokens, const int *lens,
                        const int *doc_start, int B, int T, BlError *err) {
    int vocab = s->model->cfg.vocab_size;
    size_t M = (size_t)B * T;
    for (int b = 0; b < B; b++) {
        if (lens[b] < 0 || lens[b] > T)
            return bl_fail(err, "forward: lens[%d] = %d is outside 0..%d", b, lens[b], T);
        for (int t = 0; t < T; t++) {
            int id = t < lens[b] ? tokens[b * T + t] : 0;
            if (id < 0 || id >= vocab)
                return bl_fail(err, "forward: token %d at [%d, %d] is outside the vocab (%d)", id,
                               b, t, vocab);
            s->host_ids[b * T + t] = id;
        }
    }
    if (doc_start && bl_doc_start_check(doc_start, lens, B, T, err))
        return bl_fail_prefix(err, "forward");
    if (s->be->upload(s->ids, s->host_ids, M * sizeof(int), err)) return -1;
    bl_positions(s->host_ids, doc_start, lens, B, T);
    if (s->be->upload(s->pos, s->host_ids, M * sizeof(int), err)) return -1;
    s->packed = doc_start != NULL;
    if (doc_start && s->be->upload(s->doc_start, doc_start, M * sizeof(int), err)) return -1;
    return s->be->upload(s->lens, lens, (size_t)B * sizeof(int), err);
}

int bl_forward(BlForwardState *s, const int *tokens, const int *lens, const int *doc_start, int B,
               int T, float *logits, float **hidden, BlError *err) {
    const BlConfig *c = &s->model->cfg;
    const BlBackend *be = s->be;
    if (B <= 0 || T <= 0 || B > s->B || T > s->T)
        return bl_fail(err, "forward: batch %d x %d exceeds the state's %d x %d", B, T, s->B,
                       s->T);
    if (upload_batch(s, tokens, lens, doc_start, B, T, err)) return -1;
    int M = B * T;
    be->embed(s->x, s->model->tok_embd, s->ids, M, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        bl_block_attn_inputs(s, l, M, s->k, s->v);
        be->attention(s->ao, s->att, s->q, s->k, s->v, s->lens, bl_forward_doc_start(s), B, T,
                      c->n_heads, c->n_kv_heads, c->head_dim);
        bl_block_tail(s, l, M);
        if (hidden && hidden[l] &&
            be->download(hidden[l], s->x, (size_t)M * c->dim * sizeof(float), err))
            return -1;
    }
    /* the logits in chunks of the buffer's rows */
    for (int r0 = 0; logits && r0 < M; r0 += s->logits_rows) {
        int n = M - r0 < s->logits_rows ? M - r0 : s->logits_rows;
        bl_forward_logits(s, r0, n);
        if (be->download(logits + (size_t)r0 * c->vocab_size, s->logits,
                         (size_t)n * c->vocab_size * sizeof(float), err))
            return -1;
    }
    return be->sync(err);
}

double bl_forward_matmul_flops(const BlConfig *c, long long M) {
    double qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    double per_token = c->dim * (qd + 2 * kvd)  /* q, k, v */
                       + qd * c->dim            /* o */
                       + 3.0 * c->dim * c->hidden_dim; /* gate, up, down */
    return 2.0 * M * (per_token * c->n_layers + (double)c->dim * c->vocab_size);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int bl_bench_forward(const BlModel *m, const BlBackend *be, int B, int T, int reps,
                     BlForwardBench *out, BlError *err) {
    if (reps <= 0) return bl_fail(err, "bench: reps must be positive");
    size_t M = (size_t)B * T;
    BlForwardState s;
    if (bl_build_forward_state(&s, m, be, B, T, true, err)) return -1;
    int *tokens = bl_malloc(M * sizeof(int), err), *lens = bl_malloc((size_t)B * sizeof(int), err);
    float *logits = bl_malloc(M * m->cfg.vocab_size * sizeof(float), err);
    int rc = tokens && lens && logits ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < M; i++)
        tokens[i] = (int)((i * 2654435761u) % (unsigned)m->cfg.vocab_size);
    for (int b = 0; rc == 0 && b < B; b++) lens[b] = T;
    double best = 1e300;
    for (int r = 0; rc == 0 && r <= reps; r++) {
        double t0 = now_s();
        rc = bl_forward(&s, tokens, lens, NULL, B, T, logits, NULL, err);
        double dt = now_s() - t0;
        if (r > 0 && dt < best) best = dt; /* r = 0 warms up */
    }
    if (rc == 0)
        *out = (BlForwardBench){.B = B, .T = T, .reps = reps, .seconds = best,
                                .tokens_per_s = M / best,
                                .gemm_gflops = bl_forward_matmul_flops(&m->cfg, M) / best / 1e9};
    free(tokens);
    free(lens);
    free(logits);
    bl_free_forward_state(&s);
    return rc;
}
