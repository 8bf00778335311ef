/* relation_loss.c - the attention-relation loss (see relation_loss.h): per
 * sequence and X in {q, k, v}, every head's relation logits S = X·Xᵀ/sqrt(hd)
 * of the student and the teacher by be->gemm (the whole T×T product: the
 * causal half is what be->relation_kl reads, and one GEMM is cheaper than
 * T small ones), be->relation_kl (the windowed softmaxes, the KL and dL/dS in
 * place of the student's S), then dX += (G + Gᵀ)·X/sqrt(hd) by two more GEMMs. */
#include "train/relation_loss.h"

#include <math.h>

size_t bl_relation_scratch_floats(int max_heads, int T) {
    return 2 * (size_t)(max_heads > 0 ? max_heads : 0) * T * T;
}

double bl_relation_loss(const BlBackend *be, const BlRelationInput in[3], int B, int T, int hd,
                        const uint8_t *sel, const uint8_t *h_sel, const int *lo,
                        float grad_weight, float *scratch) {
    long n_sel = 0;
    for (long i = 0; i < (long)B * T; i++) n_sel += h_sel[i] != 0;
    if (n_sel == 0 || hd <= 0) return 0.0;
    float c = 1.0f / sqrtf((float)hd);
    size_t TT = (size_t)T * T;
    double rel = 0.0;
    for (int x = 0; x < 3; x++) {
        const BlRelationInput *X = &in[x];
        int nh = X->heads, ld = X->ld;
        /* this X's share: its mean over heads and rows, a third of rel */
        double f = 1.0 / (3.0 * nh * (double)n_sel);
        float g = (float)(grad_weight * f);
        float *ss = scratch, *st = scratch + (size_t)nh * TT;
        double kl = 0.0;
        for (int b = 0; b < B; b++) {
            long nb = 0;
            for (int t = 0; t < T; t++) nb += h_sel[(size_t)b * T + t] != 0;
            if (nb == 0) continue;
            size_t r0 = (size_t)b * T * ld;
            for (int h = 0; h < nh; h++) {
                const float *xs = X->s + r0 + (size_t)h * hd, *xt = X->t + r0 + (size_t)h * hd;
                be->gemm(false, true, T, T, hd, c, xs, ld, xs, ld, 0.0f, ss + h * TT, T);
                be->gemm(false, true, T, T, hd, c, xt, ld, xt, ld, 0.0f, st + h * TT, T);
            }
            kl += be->relation_kl(ss, st, nh, T, sel + (size_t)b * T,
                                  lo ? lo + (size_t)b * T : NULL, X->ds ? g : 0.0f);
            if (!X->ds) continue;
            /* S = c·X·Xᵀ: dX = c·(G + Gᵀ)·X, G = dL/dS (now in ss) */
            for (int h = 0; h < nh; h++) {
                const float *xs = X->s + r0 + (size_t)h * hd;
                float *dx = X->ds + r0 + (size_t)h * hd;
                be->gemm(false, false, T, hd, T, c, ss + h * TT, T, xs, ld, 1.0f, dx, ld);
                be->gemm(true, false, T, hd, T, c, ss + h * TT, T, xs, ld, 1.0f, dx, ld);
            }
        }
        rel += f * kl;
    }
    return rel;
}
