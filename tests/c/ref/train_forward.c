/* train_forward.c - the training state and the student forward (see
 * train_forward.h). Same block as nn/forward.c, with every linear a
 * BitLinear and every activation the backward needs kept per layer. */
#include "train_forward.h"

#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/quant.h"

// ----------------------------------------------------------------------------
// state

#define MAX2(a, b) ((a) > (b) ? (a) : (b))

int bl_build_train_state(BlTrainState *s, const BlStudent *st, int B, int T, BlError *err) {
    memset(s, 0, sizeof *s);
    if (B <= 0 || T <= 0) return bl_fail(err, "train state: bad batch %d x %d", B, T);
    const BlModel *m = st->model;
    const BlConfig *c = &m->cfg;
    s->model = m;
    s->Bcap = B;
    s->Tcap = T;
    size_t M = (size_t)B * T, L = (size_t)c->n_layers, D = (size_t)c->dim;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t H = (size_t)c->hidden_dim, F = sizeof(float);
    size_t maxin = MAX2(MAX2(D, qd), H), maxout = MAX2(D, qd + 2 * kvd), wmax = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &m->layers[l].lin[k];
            if (w->w) wmax = MAX2(wmax, (size_t)w->out * w->in);
        }
    struct { float **p; size_t floats; int saved; } bufs[] = {
        {&s->xs, (L + 1) * M * D, 1},
        {&s->rstd1, L * M, 1},
        {&s->rstd2, L * M, 1},
        {&s->q, L * M * qd, 1},
        {&s->k, L * M * kvd, 1},
        {&s->v, L * M * kvd, 1},
        {&s->att, L * M * c->n_heads * T, 1},
        {&s->ao, L * M * qd, 1},
        {&s->xmid, L * M * D, 1},
        {&s->gu, L * M * 2 * H, 1},
        {&s->opre, st->cfg.post_attn_norm ? L * M * D : 0, 1},
        {&s->rstd_pa, st->cfg.post_attn_norm ? L * M : 0, 1},
        {&s->rstd_sub, st->cfg.subln ? L * BL_LIN_KINDS * M : 0, 1},
        {&s->xf, M * D, 1},
        {&s->rstd_f, M, 1},
        {&s->xn, M * D, 0},
        {&s->xq, M * maxin, 0},
        {&s->y, M * maxout, 0},
        {&s->act, M * H, 0},
        {&s->weff, wmax, 0},
        {&s->dx, M * D, 0},
        {&s->dx2, M * maxin, 0},
        {&s->dxn, M * D, 0},
        {&s->dxf, M * D, 0},
        {&s->dgu, M * 2 * H, 0},
        {&s->dact, M * H, 0},
        {&s->dq, M * qd, 0},
        {&s->dk, M * kvd, 0},
        {&s->dv, M * kvd, 0},
        {&s->dao, M * qd, 0},
        {&s->dp, (size_t)T * T, 0},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (!bufs[i].floats) continue;
        if (!(*bufs[i].p = bl_malloc(bufs[i].floats * F, err))) {
            bl_free_train_state(s);
            return bl_fail_prefix(err, "train state for %d x %d tokens", B, T);
        }
        *(bufs[i].saved ? &s->bytes_saved : &s->bytes_scratch) += bufs[i].floats * F;
    }
    s->pos = bl_malloc(M * sizeof(int), err);
    s->lens = s->pos ? bl_malloc((size_t)B * sizeof(int), err) : NULL;
    if (!s->lens) {
        bl_free_train_state(s);
        return -1;
    }
    return 0;
}

void bl_free_train_state(BlTrainState *s) {
    float *bufs[] = {s->xs,   s->rstd1, s->rstd2,   s->q,        s->k,    s->v,   s->att,
                     s->ao,   s->xmid,  s->gu,      s->opre,     s->rstd_pa, s->rstd_sub,
                     s->xf,   s->rstd_f, s->xn,     s->xq,       s->y,    s->act, s->weff,
                     s->lscratch, s->dx, s->dx2, s->dxn,    s->dxf,      s->dgu,  s->dact, s->dq,
                     s->dk,   s->dv,    s->dao,     s->dp};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->pos);
    free(s->lens);
    memset(s, 0, sizeof *s);
}

/* The LoRA backward needs M·r floats for the newest adapter of any linear. */
static int grow_lscratch(BlTrainState *s, BlStudent *st, int M, BlError *err) {
    size_t need = 1;
    const BlConfig *c = &st->model->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++)
            if (bl_student_has(st, l, k))
                need = MAX2(need, bl_lora_scratch_floats(&bl_student_linear(st, l, k)->lora, M));
    if (need <= s->lscratch_floats) return 0;
    float *p = bl_malloc(need * sizeof(float), err);
    if (!p) return -1;
    free(s->lscratch);
    s->lscratch = p;
    s->lscratch_floats = need;
    return 0;
}

// ----------------------------------------------------------------------------
// BitLinear pieces

void bl_train_bitlinear_input(float *xq, float *rstd, const float *x, const BlBitLinear *L, int M) {
    const float *src = x;
    if (L->subln) {
        bl_rmsnorm(xq, rstd, x, L->subln, M, L->in, L->subln_eps);
        src = xq;
    }
    /* act_bits was checked when the student was built, so this cannot fail */
    bl_actq(xq, NULL, src, M, L->in, L->act_bits, NULL);
}

static float *rstd_sub(const BlTrainState *s, int l, BlLinearKind k, int M) {
    return s->rstd_sub ? s->rstd_sub + ((size_t)l * BL_LIN_KINDS + k) * M : NULL;
}

/* y = actq(subln(x))·Weffᵀ + b for each linear of `kinds` (one input shared):
 * without SubLN the quantised input is computed once for all of them. */
static void bitlinear_group(BlTrainState *s, BlStudent *st, int l, const BlLinearKind *kinds,
                            float *const *ys, int n, const float *x, int M) {
    for (int i = 0; i < n; i++) {
        BlBitLinear L = bl_student_bitlinear(st, l, kinds[i]);
        if (i == 0 || L.subln) bl_train_bitlinear_input(s->xq, rstd_sub(s, l, kinds[i], M), x, &L, M);
        bl_bitlinear_weff(s->weff, &L);
        bl_matmul(ys[i], s->xq, s->weff, L.b, M, L.out, L.in);
    }
}

// ----------------------------------------------------------------------------
// the forward

static int set_batch(BlTrainState *s, const int *tokens, const int *lens, int B, int T,
                     BlError *err) {
    int vocab = s->model->cfg.vocab_size;
    if (B <= 0 || T <= 0 || B > s->Bcap || T > s->Tcap)
        return bl_fail(err, "train forward: batch %d x %d exceeds the state's %d x %d", B, T,
                       s->Bcap, s->Tcap);
    for (int b = 0; b < B; b++) {
        if (lens[b] < 0 || lens[b] > T)
            return bl_fail(err, "train forward: lens[%d] = %d is outside 0..%d", b, lens[b], T);
        for (int t = 0; t < lens[b]; t++)
            if (tokens[b * T + t] < 0 || tokens[b * T + t] >= vocab)
                return bl_fail(err, "train forward: token %d at [%d, %d] is outside the vocab (%d)",
                               tokens[b * T + t], b, t, vocab);
        s->lens[b] = lens[b];
    }
    s->B = B;
    s->T = T;
    for (int m = 0; m < B * T; m++) s->pos[m] = m % T;
    return 0;
}

static void block_forward(BlTrainState *s, BlStudent *st, int l) {
    const BlConfig *c = &s->model->cfg;
    const BlLayer *ly = &s->model->layers[l];
    int M = s->B * s->T, D = c->dim, H = c->hidden_dim;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    size_t mD = (size_t)M * D;
    const float *x = s->xs + l * mD;
    float *q = s->q + (size_t)l * M * qd, *k = s->k + (size_t)l * M * kvd,
          *v = s->v + (size_t)l * M * kvd, *ao = s->ao + (size_t)l * M * qd;
    float *xmid = s->xmid + l * mD, *gu = s->gu + (size_t)l * M * 2 * H;
    float *att = s->att + (size_t)l * M * c->n_heads * s->T;
    float *xout = s->xs + (l + 1) * mD;

    /* attention */
    bl_rmsnorm(s->xn, s->rstd1 + (size_t)l * M, x, ly->attn_norm, M, D, c->norm_eps);
    if (c->fused_qkv) {
        BlLinearKind kk[1] = {BL_LIN_QKV};
        float *ys[1] = {s->y};
        bitlinear_group(s, st, l, kk, ys, 1, s->xn, M);
        int ld = qd + 2 * kvd;
        for (int m = 0; m < M; m++) {
            const float *r = s->y + (size_t)m * ld;
            memcpy(q + (size_t)m * qd, r, sizeof(float) * qd);
            memcpy(k + (size_t)m * kvd, r + qd, sizeof(float) * kvd);
            memcpy(v + (size_t)m * kvd, r + qd + kvd, sizeof(float) * kvd);
        }
    } else {
        BlLinearKind kk[3] = {BL_LIN_Q, BL_LIN_K, BL_LIN_V};
        float *ys[3] = {q, k, v};
        bitlinear_group(s, st, l, kk, ys, 3, s->xn, M);
    }
    bl_rope(q, s->pos, M, c->n_heads, c->head_dim, c->rope_theta, c->rope_interleaved);
    bl_rope(k, s->pos, M, c->n_kv_heads, c->head_dim, c->rope_theta, c->rope_interleaved);
    bl_attention(ao, att, q, k, v, s->lens, NULL, s->B, s->T, c->n_heads, c->n_kv_heads,
                 c->head_dim);
    {
        BlLinearKind kk[1] = {BL_LIN_O};
        float *o = s->opre ? s->opre + l * mD : s->y;
        float *ys[1] = {o};
        bitlinear_group(s, st, l, kk, ys, 1, ao, M);
        if (s->opre) { /* post-attention norm: y = rmsnorm(o) */
            bl_rmsnorm(s->y, s->rstd_pa + (size_t)l * M, o, st->post_norm + (size_t)l * D, M, D,
                       c->norm_eps);
        }
        for (size_t i = 0; i < mD; i++) xmid[i] = x[i] + s->y[i];
    }

    /* MLP */
    bl_rmsnorm(s->xn, s->rstd2 + (size_t)l * M, xmid, ly->ffn_norm, M, D, c->norm_eps);
    if (c->fused_gate_up) {
        BlLinearKind kk[1] = {BL_LIN_GATE_UP};
        float *ys[1] = {gu};
        bitlinear_group(s, st, l, kk, ys, 1, s->xn, M);
        bl_swiglu(s->act, gu, gu + H, M, H, 2 * H);
    } else {
        BlLinearKind kk[2] = {BL_LIN_GATE, BL_LIN_UP};
        float *ys[2] = {gu, gu + (size_t)M * H};
        bitlinear_group(s, st, l, kk, ys, 2, s->xn, M);
        bl_swiglu(s->act, gu, gu + (size_t)M * H, M, H, H);
    }
    {
        BlLinearKind kk[1] = {BL_LIN_DOWN};
        float *ys[1] = {s->y};
        bitlinear_group(s, st, l, kk, ys, 1, s->act, M);
    }
    for (size_t i = 0; i < mD; i++) xout[i] = xmid[i] + s->y[i];
}

int bl_train_forward(BlTrainState *s, BlStudent *st, const int *tokens, const int *lens, int B,
                     int T, BlError *err) {
    const BlConfig *c = &s->model->cfg;
    if (set_batch(s, tokens, lens, B, T, err) || grow_lscratch(s, st, B * T, err)) return -1;
    int M = B * T;
    for (int b = 0; b < B; b++) /* padding embeds token 0, as in the teacher */
        for (int t = 0; t < T; t++)
            memcpy(s->xs + ((size_t)b * T + t) * c->dim,
                   s->model->tok_embd + (size_t)(t < lens[b] ? tokens[b * T + t] : 0) * c->dim,
                   sizeof(float) * c->dim);
    for (int l = 0; l < c->n_layers; l++) block_forward(s, st, l);
    bl_rmsnorm(s->xf, s->rstd_f, s->xs + (size_t)c->n_layers * M * c->dim, s->model->out_norm, M,
               c->dim, c->norm_eps);
    return 0;
}

void bl_train_logits(const BlTrainState *s, int row0, int n, float *logits) {
    const BlConfig *c = &s->model->cfg;
    bl_matmul(logits, s->xf + (size_t)row0 * c->dim, s->model->lm_head, NULL, n, c->vocab_size,
              c->dim);
}

const float *bl_train_hidden(const BlTrainState *s, int l) {
    return s->xs + (size_t)(l + 1) * s->B * s->T * s->model->cfg.dim;
}
