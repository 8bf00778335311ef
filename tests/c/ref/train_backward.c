/* train_backward.c - the backward of the student's training forward (see
 * train_forward.h): final norm, every block in reverse (MLP half, then
 * attention half), into the trainable LoRA factors and norm weights. The LM
 * head and the embeddings are frozen; the caller starts from dxf and the
 * backward stops at the embedding output.
 *
 * Gradients w.r.t. activations are overwritten block after block in scratch;
 * parameter gradients accumulate (micro-batches sum). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "ops/ops.h"
#include "train_forward.h"

// ----------------------------------------------------------------------------
// attention: per (sequence, head) GEMMs over the saved probabilities P
//   dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)) / √hd,
//   dQ = dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO   (GQA: heads of a group sum into dK, dV)
// P is 0 above the diagonal, so dS is too and causality needs no masks.

void bl_train_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                 const float *att, const float *q, const float *k,
                                 const float *v, const int *lens, int B, int T, int nh, int nkv,
                                 int hd, float *dp) {
    int qs = nh * hd, ks = nkv * hd, group = nh / nkv;
    float scale = 1.0f / sqrtf((float)hd);
    memset(dq, 0, sizeof(float) * (size_t)B * T * qs);
    memset(dk, 0, sizeof(float) * (size_t)B * T * ks);
    memset(dv, 0, sizeof(float) * (size_t)B * T * ks);
    for (int b = 0; b < B; b++) {
        int L = lens[b] < T ? lens[b] : T;
        if (L <= 0) continue;
        for (int h = 0; h < nh; h++) {
            size_t qo = (size_t)b * T * qs + (size_t)h * hd;
            size_t ko = (size_t)b * T * ks + (size_t)(h / group) * hd;
            const float *P = att + ((size_t)b * nh + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, hd, 1.0f, dout + qo, qs,
                        v + ko, ks, 0.0f, dp, L);
            for (int t = 0; t < L; t++) {
                const float *pr = P + (size_t)t * T;
                float *dr = dp + (size_t)t * L;
                float dot = 0.0f;
                for (int s = 0; s <= t; s++) dot += pr[s] * dr[s];
                for (int s = 0; s <= t; s++) dr[s] = pr[s] * (dr[s] - dot) * scale;
                for (int s = t + 1; s < L; s++) dr[s] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, hd, L, 1.0f, dp, L, k + ko,
                        ks, 0.0f, dq + qo, qs);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, hd, L, 1.0f, dp, L, q + qo, qs,
                        1.0f, dk + ko, ks);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, hd, L, 1.0f, P, T, dout + qo,
                        qs, 1.0f, dv + ko, ks);
        }
    }
}

// ----------------------------------------------------------------------------
// BitLinear group: linears sharing one input x

static float *rstd_sub(const BlTrainState *s, int l, BlLinearKind k, int M) {
    return s->rstd_sub ? s->rstd_sub + ((size_t)l * BL_LIN_KINDS + k) * M : NULL;
}

/* dx[M, in] = Σ_i subln_backward(dys[i]·Weff_i); accumulates the LoRA
 * gradients (from the recomputed quantised input, STE) and dsubln. */
static void bitlinear_group_backward(BlTrainState *s, BlStudent *st, int l,
                                     const BlLinearKind *kinds, const float *const *dys, int n,
                                     const float *x, float *dx, int M) {
    for (int i = 0; i < n; i++) {
        BlBitLinear L = bl_student_bitlinear(st, l, kinds[i]);
        if (i == 0 || L.subln) bl_train_bitlinear_input(s->xq, NULL, x, &L, M);
        if (L.lora) bl_lora_backward(L.lora, dys[i], s->xq, M, s->lscratch);
        bl_bitlinear_weff(s->weff, &L);
        /* without SubLN the group's input gradients sum straight into dx */
        float *dst = L.subln ? s->dx2 : dx;
        float beta = !L.subln && i > 0 ? 1.0f : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, L.in, L.out, 1.0f, dys[i],
                    L.out, s->weff, L.in, beta, dst, L.in);
        if (!L.subln) continue;
        bl_rmsnorm_backward(s->dx2, L.dsubln, s->dx2, x, L.subln, rstd_sub(s, l, kinds[i], M), M,
                            L.in);
        size_t nn = (size_t)M * L.in;
        if (i == 0) memcpy(dx, s->dx2, sizeof(float) * nn);
        else
            for (size_t j = 0; j < nn; j++) dx[j] += s->dx2[j];
    }
}

// ----------------------------------------------------------------------------
// one block, from s->dx = dL/d(block output) to s->dx = dL/d(block input)

static void add(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void block_backward(BlTrainState *s, BlStudent *st, int l) {
    const BlConfig *c = &s->model->cfg;
    const BlLayer *ly = &s->model->layers[l];
    int M = s->B * s->T, D = c->dim, H = c->hidden_dim;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    size_t mD = (size_t)M * D;
    const float *x = s->xs + l * mD, *xmid = s->xmid + l * mD;
    const float *q = s->q + (size_t)l * M * qd, *k = s->k + (size_t)l * M * kvd,
                *v = s->v + (size_t)l * M * kvd, *ao = s->ao + (size_t)l * M * qd;
    const float *gu = s->gu + (size_t)l * M * 2 * H;
    const float *att = s->att + (size_t)l * M * c->n_heads * s->T;

    /* MLP: xout = xmid + down(swiglu(gate(n), up(n))), n = rmsnorm(xmid) */
    int ld = c->fused_gate_up ? 2 * H : H;
    const float *up = c->fused_gate_up ? gu + H : gu + (size_t)M * H;
    float *dup = c->fused_gate_up ? s->dgu + H : s->dgu + (size_t)M * H;
    bl_swiglu(s->act, gu, up, M, H, ld);
    {
        BlLinearKind kk[1] = {BL_LIN_DOWN};
        const float *dys[1] = {s->dx};
        bitlinear_group_backward(s, st, l, kk, dys, 1, s->act, s->dact, M);
    }
    bl_swiglu_backward(s->dgu, dup, s->dact, gu, up, M, H, ld);
    bl_rmsnorm(s->xn, NULL, xmid, ly->ffn_norm, M, D, c->norm_eps);
    if (c->fused_gate_up) {
        BlLinearKind kk[1] = {BL_LIN_GATE_UP};
        const float *dys[1] = {s->dgu};
        bitlinear_group_backward(s, st, l, kk, dys, 1, s->xn, s->dxn, M);
    } else {
        BlLinearKind kk[2] = {BL_LIN_GATE, BL_LIN_UP};
        const float *dys[2] = {s->dgu, dup};
        bitlinear_group_backward(s, st, l, kk, dys, 2, s->xn, s->dxn, M);
    }
    bl_rmsnorm_backward(s->dxn, NULL, s->dxn, xmid, ly->ffn_norm, s->rstd2 + (size_t)l * M, M, D);
    add(s->dx, s->dxn, mD); /* dx = dL/dxmid */

    /* attention: xmid = x + pn(o(attn(rope(q), rope(k), v))) */
    const float *dyo = s->dx;
    if (s->opre) {
        bl_rmsnorm_backward(s->dxn, st->dpost_norm + (size_t)l * D, s->dx, s->opre + l * mD,
                            st->post_norm + (size_t)l * D, s->rstd_pa + (size_t)l * M, M, D);
        dyo = s->dxn;
    }
    {
        BlLinearKind kk[1] = {BL_LIN_O};
        const float *dys[1] = {dyo};
        bitlinear_group_backward(s, st, l, kk, dys, 1, ao, s->dao, M);
    }
    bl_train_attention_backward(s->dq, s->dk, s->dv, s->dao, att, q, k, v, s->lens, s->B, s->T,
                                c->n_heads, c->n_kv_heads, c->head_dim, s->dp);
    bl_rope_backward(s->dq, s->pos, M, c->n_heads, c->head_dim, c->rope_theta,
                     c->rope_interleaved);
    bl_rope_backward(s->dk, s->pos, M, c->n_kv_heads, c->head_dim, c->rope_theta,
                     c->rope_interleaved);
    bl_rmsnorm(s->xn, NULL, x, ly->attn_norm, M, D, c->norm_eps);
    if (c->fused_qkv) { /* the fused output's gradient, [q | k | v] per row, in s->y */
        int ldq = qd + 2 * kvd;
        for (int m = 0; m < M; m++) {
            float *r = s->y + (size_t)m * ldq;
            memcpy(r, s->dq + (size_t)m * qd, sizeof(float) * qd);
            memcpy(r + qd, s->dk + (size_t)m * kvd, sizeof(float) * kvd);
            memcpy(r + qd + kvd, s->dv + (size_t)m * kvd, sizeof(float) * kvd);
        }
        BlLinearKind kk[1] = {BL_LIN_QKV};
        const float *dys[1] = {s->y};
        bitlinear_group_backward(s, st, l, kk, dys, 1, s->xn, s->dxn, M);
    } else {
        BlLinearKind kk[3] = {BL_LIN_Q, BL_LIN_K, BL_LIN_V};
        const float *dys[3] = {s->dq, s->dk, s->dv};
        bitlinear_group_backward(s, st, l, kk, dys, 3, s->xn, s->dxn, M);
    }
    bl_rmsnorm_backward(s->dxn, NULL, s->dxn, x, ly->attn_norm, s->rstd1 + (size_t)l * M, M, D);
    add(s->dx, s->dxn, mD); /* dx = dL/dx */
}

void bl_train_backward(BlTrainState *s, BlStudent *st, const float *dxf,
                       BlHiddenGradFn hidden_grad, void *ctx) {
    const BlConfig *c = &s->model->cfg;
    int M = s->B * s->T;
    bl_rmsnorm_backward(s->dx, NULL, dxf, s->xs + (size_t)c->n_layers * M * c->dim,
                        s->model->out_norm, s->rstd_f, M, c->dim);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        if (hidden_grad) hidden_grad(ctx, l, s->dx);
        block_backward(s, st, l);
    }
}
