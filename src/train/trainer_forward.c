/* trainer_forward.c - the student's training forward and backward through
 * the backend table, every op a be-> call on backend memory, every block
 * linear the BitLinear of device_student.h (Weff formed by
 * be->bitlinear_weff from the concatenated LoRA stack). Saved per layer:
 * the block input (residual), q and k after RoPE, v, the attention
 * probabilities and output, o_proj's output (with the post-attention norm),
 * the residual after attention, the MLP's gate/up pre-activations and the
 * rstd of every RMSNorm. Cheap elementwise values (the normed inputs,
 * actq's output, swiglu's output) and Weff are recomputed in the backward
 * instead of stored.
 *
 * Gradients use the straight-through estimator: actq (blended by λ or not)
 * and wq pass gradients unchanged, so dWeff/d(W+ΔW) = I and dL/dΔW = dyᵀ·xq (never formed densely:
 * the LoRA factors get it through low-rank products). W and b stay frozen. */
#include "train/trainer.h"

// ----------------------------------------------------------------------------
// BitLinear pieces

static float *rstd_sub(const BlTrainer *tr, int l, BlLinearKind k, int M) {
    return tr->a.rstd_sub ? tr->a.rstd_sub + ((size_t)l * BL_LIN_KINDS + k) * M : NULL;
}

/* ys[i] = xq·Weff_iᵀ + b_i, xq = actq(subln(x)) (blended by λ with
 * lambda_acts: bl_bitlinear_input), for the linears of `kinds`, which share
 * the input x; without SubLN the quantised input is computed once. */
static int group_forward(BlTrainer *tr, int l, const BlLinearKind *kinds, float *const *ys,
                         int n, const float *x, int M, const BlStepParams *p, BlError *err) {
    bool fast = tr->shape.ternary_fast_path && bl_bitlinear_fast_path(p->lambda, p->act_bits);
    float eps = tr->m->cfg.norm_eps;
    for (int i = 0; i < n; i++) {
        const BlDevLinear *L = bl_dev_linear(&tr->ds, l, kinds[i]);
        if (bl_bitlinear_apply(tr->be, L, x, ys[i], M, p->lambda, p->act_bits, p->lambda_acts, eps,
                               fast, i > 0, tr->a.xq, rstd_sub(tr, l, kinds[i], M), tr->a.weff,
                               NULL, err))
            return bl_fail_prefix(err, "layer %d %s", l, bl_linear_kind_name(kinds[i]));
    }
    return 0;
}

/* dB += s·dyᵀ·(x·Aᵀ), dA += s·(dy·B)ᵀ·x, ddense += dyᵀ·x: bl_lora_backward's
 * four products on the newest adapter */
static void lora_backward(const BlTrainer *tr, const BlDevLinear *L, const float *dy,
                          const float *xq, int M) {
    const BlBackend *be = tr->be;
    int out = L->out, in = L->in, r = L->r;
    float *u = tr->a.lscratch;
    if (r > 0) {
        be->gemm(false, true, M, r, in, 1.0f, xq, in, L->A, in, 0.0f, u, r);
        be->gemm(true, false, out, r, M, L->scale, dy, out, u, r, 1.0f, L->dB, r);
        be->gemm(false, false, M, r, out, 1.0f, dy, out, L->B, r, 0.0f, u, r);
        be->gemm(true, false, r, in, M, L->scale, u, r, xq, in, 1.0f, L->dA, in);
    }
    if (L->ddense)
        be->gemm(true, false, out, in, M, 1.0f, dy, out, xq, in, 1.0f, L->ddense, in);
}

/* dx[M, in] = Σ_i subln_backward(dys[i]·Weff_i); accumulates the trainable
 * gradients from the recomputed quantised input (STE) */
static void group_backward(BlTrainer *tr, int l, const BlLinearKind *kinds,
                           const float *const *dys, int n, const float *x, float *dx, int M,
                           const BlStepParams *p) {
    const BlBackend *be = tr->be;
    BlDevActs *a = &tr->a;
    for (int i = 0; i < n; i++) {
        const BlDevLinear *L = bl_dev_linear(&tr->ds, l, kinds[i]);
        if (i == 0 || L->subln)
            bl_bitlinear_input(be, L, a->xq, NULL, x, M, p->act_bits,
                               bl_act_lambda(p->lambda, p->lambda_acts), tr->m->cfg.norm_eps);
        lora_backward(tr, L, dys[i], a->xq, M);
        bl_bitlinear_weff_of(be, L, a->weff, p->lambda);
        /* dL/dxq = dy·Weff, passed through actq unchanged (STE) */
        float *dst = L->subln || i > 0 ? a->dx2 : dx;
        be->matmul_backward(dst, NULL, NULL, dys[i], NULL, a->weff, M, L->out, L->in);
        if (L->subln)
            be->rmsnorm_backward(a->dx2, L->dsubln, a->dx2, x, L->subln,
                                 rstd_sub(tr, l, kinds[i], M), M, L->in);
        if (dst != dx) {
            if (i == 0) be->copy2d(dx, L->in, a->dx2, L->in, M, L->in);
            else be->add(dx, a->dx2, (size_t)M * L->in);
        }
    }
}

// ----------------------------------------------------------------------------
// the forward

/* y = x + r: a residual add, as a copy then an add */
static void residual(const BlBackend *be, float *y, const float *x, const float *r, int M, int D) {
    be->copy2d(y, D, x, D, M, D);
    be->add(y, r, (size_t)M * D);
}

static int block_forward(BlTrainer *tr, int l, const BlStepParams *p, BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    const BlLayer *ly = &tr->m->layers[l];
    const BlForwardState *ts = &tr->teacher;
    BlDevActs *a = &tr->a;
    int B = tr->cur_B, T = tr->cur_T, M = B * T, D = c->dim, H = c->hidden_dim;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    size_t mD = (size_t)M * D;
    const float *x = a->xs + l * mD;
    float *q = a->q + (size_t)l * M * qd, *k = a->k + (size_t)l * M * kvd,
          *v = a->v + (size_t)l * M * kvd, *ao = a->ao + (size_t)l * M * qd;
    float *xmid = a->xmid + l * mD, *gu = a->gu + (size_t)l * M * 2 * H;
    /* recomputed in the backward: not stored */
    float *att = tr->shape.attention_probs == BL_ATT_RECOMPUTE ? NULL
                                                               : a->att + (size_t)l * M * c->n_heads * T;
    float *xout = a->xs + (l + 1) * mD;

    /* attention */
    be->rmsnorm(a->xn, a->rstd1 + (size_t)l * M, x, ly->attn_norm, M, D, c->norm_eps);
    if (c->fused_qkv) {
        BlLinearKind kk[1] = {BL_LIN_QKV};
        float *ys[1] = {a->y};
        if (group_forward(tr, l, kk, ys, 1, a->xn, M, p, err)) return -1;
        int ld = qd + 2 * kvd;
        be->copy2d(q, qd, a->y, ld, M, qd);
        be->copy2d(k, kvd, a->y + qd, ld, M, kvd);
        be->copy2d(v, kvd, a->y + qd + kvd, ld, M, kvd);
    } else {
        BlLinearKind kk[3] = {BL_LIN_Q, BL_LIN_K, BL_LIN_V};
        float *ys[3] = {q, k, v};
        if (group_forward(tr, l, kk, ys, 3, a->xn, M, p, err)) return -1;
    }
    be->rope(q, ts->pos, M, c->n_heads, c->head_dim, c->rope_theta, c->rope_interleaved);
    be->rope(k, ts->pos, M, c->n_kv_heads, c->head_dim, c->rope_theta, c->rope_interleaved);
    be->attention(ao, att, q, k, v, ts->lens, bl_forward_doc_start(ts), B, T, c->n_heads,
                  c->n_kv_heads, c->head_dim);
    {
        BlLinearKind kk[1] = {BL_LIN_O};
        float *o = a->opre ? a->opre + l * mD : a->y;
        float *ys[1] = {o};
        if (group_forward(tr, l, kk, ys, 1, ao, M, p, err)) return -1;
        if (a->opre) /* post-attention norm: y = rmsnorm(o) */
            be->rmsnorm(a->y, a->rstd_pa + (size_t)l * M, o, tr->ds.post_norm[l], M, D, c->norm_eps);
        residual(be, xmid, x, a->y, M, D);
    }

    /* MLP */
    be->rmsnorm(a->xn, a->rstd2 + (size_t)l * M, xmid, ly->ffn_norm, M, D, c->norm_eps);
    if (c->fused_gate_up) {
        BlLinearKind kk[1] = {BL_LIN_GATE_UP};
        float *ys[1] = {gu};
        if (group_forward(tr, l, kk, ys, 1, a->xn, M, p, err)) return -1;
        be->swiglu(a->act, gu, gu + H, M, H, 2 * H);
    } else {
        BlLinearKind kk[2] = {BL_LIN_GATE, BL_LIN_UP};
        float *ys[2] = {gu, gu + (size_t)M * H};
        if (group_forward(tr, l, kk, ys, 2, a->xn, M, p, err)) return -1;
        be->swiglu(a->act, gu, gu + (size_t)M * H, M, H, H);
    }
    {
        BlLinearKind kk[1] = {BL_LIN_DOWN};
        float *ys[1] = {a->y};
        if (group_forward(tr, l, kk, ys, 1, a->act, M, p, err)) return -1;
    }
    residual(be, xout, xmid, a->y, M, D);
    return 0;
}

int bl_trainer_forward(BlTrainer *tr, int B, int T, const BlStepParams *p, BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    int M = B * T;
    tr->cur_B = B;
    tr->cur_T = T;
    /* the teacher state's ids hold token 0 at padding, as the CPU student embeds */
    be->embed(tr->a.xs, tr->m->tok_embd, tr->teacher.ids, M, c->dim);
    for (int l = 0; l < c->n_layers; l++)
        if (block_forward(tr, l, p, err)) return bl_fail_prefix(err, "student");
    be->rmsnorm(tr->a.xf, tr->a.rstd_f, tr->a.xs + (size_t)c->n_layers * M * c->dim,
                tr->m->out_norm, M, c->dim, c->norm_eps);
    return 0;
}

// ----------------------------------------------------------------------------
// the backward: from a.dx = dL/d(block output) to a.dx = dL/d(block input)

static void block_backward(BlTrainer *tr, int l, const BlStepParams *p, BlAttnGradFn attn_grad,
                           void *ctx) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    const BlLayer *ly = &tr->m->layers[l];
    const BlForwardState *ts = &tr->teacher;
    BlDevActs *a = &tr->a;
    int B = tr->cur_B, T = tr->cur_T, M = B * T, D = c->dim, H = c->hidden_dim;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    size_t mD = (size_t)M * D;
    const float *x = a->xs + l * mD, *xmid = a->xmid + l * mD;
    const float *q = a->q + (size_t)l * M * qd, *k = a->k + (size_t)l * M * kvd,
                *v = a->v + (size_t)l * M * kvd, *ao = a->ao + (size_t)l * M * qd;
    const float *gu = a->gu + (size_t)l * M * 2 * H;
    bool recompute = tr->shape.attention_probs == BL_ATT_RECOMPUTE;
    float *att = a->att + (recompute ? 0 : (size_t)l * M * c->n_heads * T);

    /* MLP: xout = xmid + down(swiglu(gate(n), up(n))), n = rmsnorm(xmid) */
    int ld = c->fused_gate_up ? 2 * H : H;
    const float *up = c->fused_gate_up ? gu + H : gu + (size_t)M * H;
    float *dup = c->fused_gate_up ? a->dgu + H : a->dgu + (size_t)M * H;
    be->swiglu(a->act, gu, up, M, H, ld);
    {
        BlLinearKind kk[1] = {BL_LIN_DOWN};
        const float *dys[1] = {a->dx};
        group_backward(tr, l, kk, dys, 1, a->act, a->dact, M, p);
    }
    be->swiglu_backward(a->dgu, dup, a->dact, gu, up, M, H, ld);
    be->rmsnorm(a->xn, NULL, xmid, ly->ffn_norm, M, D, c->norm_eps);
    if (c->fused_gate_up) {
        BlLinearKind kk[1] = {BL_LIN_GATE_UP};
        const float *dys[1] = {a->dgu};
        group_backward(tr, l, kk, dys, 1, a->xn, a->dxn, M, p);
    } else {
        BlLinearKind kk[2] = {BL_LIN_GATE, BL_LIN_UP};
        const float *dys[2] = {a->dgu, dup};
        group_backward(tr, l, kk, dys, 2, a->xn, a->dxn, M, p);
    }
    be->rmsnorm_backward(a->dxn, NULL, a->dxn, xmid, ly->ffn_norm, a->rstd2 + (size_t)l * M, M, D);
    be->add(a->dx, a->dxn, mD); /* dx = dL/dxmid */

    /* attention: xmid = x + pn(o(attn(rope(q), rope(k), v))) */
    const float *dyo = a->dx;
    if (a->opre) {
        be->rmsnorm_backward(a->dxn, tr->ds.dpost_norm[l], a->dx, a->opre + l * mD, tr->ds.post_norm[l],
                             a->rstd_pa + (size_t)l * M, M, D);
        dyo = a->dxn;
    }
    {
        BlLinearKind kk[1] = {BL_LIN_O};
        const float *dys[1] = {dyo};
        group_backward(tr, l, kk, dys, 1, ao, a->dao, M, p);
    }
    if (recompute) /* this layer's probabilities; dq is overwritten next */
        be->attention(a->dq, att, q, k, v, ts->lens, bl_forward_doc_start(ts), B, T, c->n_heads,
                      c->n_kv_heads, c->head_dim);
    be->attention_backward(a->dq, a->dk, a->dv, a->dao, att, q, k, v, ts->lens,
                           bl_forward_doc_start(ts), B, T, c->n_heads, c->n_kv_heads,
                           c->head_dim);
    /* a loss on the attention inputs (the relation loss): its gradient is
     * w.r.t. the saved post-RoPE q, k, so it joins here, before RoPE's */
    if (attn_grad) attn_grad(ctx, l, a->dq, a->dk, a->dv);
    be->rope_backward(a->dq, ts->pos, M, c->n_heads, c->head_dim, c->rope_theta,
                      c->rope_interleaved);
    be->rope_backward(a->dk, ts->pos, M, c->n_kv_heads, c->head_dim, c->rope_theta,
                      c->rope_interleaved);
    be->rmsnorm(a->xn, NULL, x, ly->attn_norm, M, D, c->norm_eps);
    if (c->fused_qkv) { /* the fused output's gradient, [q | k | v] per row, in a->y */
        int ldq = qd + 2 * kvd;
        be->copy2d(a->y, ldq, a->dq, qd, M, qd);
        be->copy2d(a->y + qd, ldq, a->dk, kvd, M, kvd);
        be->copy2d(a->y + qd + kvd, ldq, a->dv, kvd, M, kvd);
        BlLinearKind kk[1] = {BL_LIN_QKV};
        const float *dys[1] = {a->y};
        group_backward(tr, l, kk, dys, 1, a->xn, a->dxn, M, p);
    } else {
        BlLinearKind kk[3] = {BL_LIN_Q, BL_LIN_K, BL_LIN_V};
        const float *dys[3] = {a->dq, a->dk, a->dv};
        group_backward(tr, l, kk, dys, 3, a->xn, a->dxn, M, p);
    }
    be->rmsnorm_backward(a->dxn, NULL, a->dxn, x, ly->attn_norm, a->rstd1 + (size_t)l * M, M, D);
    be->add(a->dx, a->dxn, mD); /* dx = dL/dx */
}

void bl_trainer_backward(BlTrainer *tr, const BlStepParams *p, BlHiddenGradFn hidden_grad,
                         BlAttnGradFn attn_grad, void *ctx) {
    const BlConfig *c = &tr->m->cfg;
    int M = tr->cur_B * tr->cur_T;
    tr->be->rmsnorm_backward(tr->a.dx, NULL, tr->a.dxf, tr->a.xs + (size_t)c->n_layers * M * c->dim,
                             tr->m->out_norm, tr->a.rstd_f, M, c->dim);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        if (hidden_grad) hidden_grad(ctx, l, tr->a.dx);
        block_backward(tr, l, p, attn_grad, ctx);
    }
}
