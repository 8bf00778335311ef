/* bitlinear.c - the student's ternary linear with STE gradients (see bitlinear.h). */
#include "bitlinear.h"

#include <cblas.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/quant.h"

void bl_bitlinear_weff(float *weff, const BlBitLinear *L) {
    size_t n = (size_t)L->out * L->in;
    if (L->lora) bl_lora_merge(weff, L->w, L->lora);
    else memcpy(weff, L->w, sizeof(float) * n);
    bl_weff(weff, weff, n, L->lambda);
}

int bl_bitlinear_forward(float *y, float *xq, float *rstd, const float *x, const BlBitLinear *L,
                         int M, float *weff, BlError *err) {
    const float *src = x;
    if (L->subln) {
        bl_rmsnorm(xq, rstd, x, L->subln, M, L->in, L->subln_eps);
        src = xq;
    }
    if (bl_actq_blend(xq, NULL, src, M, L->in, L->act_bits, 1.0f - L->act_keep, err))
        return bl_fail_prefix(err, "bitlinear");
    bl_bitlinear_weff(weff, L);
    bl_matmul(y, xq, weff, L->b, M, L->out, L->in);
    return 0;
}

void bl_bitlinear_backward(float *dx, const float *dy, const float *x, const float *xq,
                           const float *rstd, BlBitLinear *L, int M, float *weff,
                           float *lscratch) {
    if (L->lora) bl_lora_backward(L->lora, dy, xq, M, lscratch);
    /* dL/dxq = dy·Weff, which STE passes through actq (blended or not) unchanged */
    bl_bitlinear_weff(weff, L);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, L->in, L->out, 1.0f, dy, L->out,
                weff, L->in, 0.0f, dx, L->in);
    if (L->subln) /* in place: rmsnorm_backward allows dx == dy */
        bl_rmsnorm_backward(dx, L->dsubln, dx, x, L->subln, rstd, M, L->in);
}

BlBitLinear bl_student_bitlinear(BlStudent *s, int l, BlLinearKind kind) {
    const BlLinear *w = &s->model->layers[l].lin[kind];
    BlStudentLinear *sl = bl_student_linear(s, l, kind);
    return (BlBitLinear){.w = w->w, .b = w->b, .out = w->out, .in = w->in,
                         .lora = sl->lora.n > 0 || sl->lora.dense ? &sl->lora : NULL,
                         .lambda = s->cfg.lambda, .act_bits = s->cfg.act_bits,
                         .act_keep = s->cfg.lambda_acts ? 1.0f - s->cfg.lambda : 0.0f,
                         .subln = sl->subln, .dsubln = sl->dsubln,
                         .subln_eps = s->model->cfg.norm_eps};
}
