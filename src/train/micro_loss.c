/* micro_loss.c - a micro-batch's hidden losses and loss total (see
 * micro_loss.h). */
#include "train/micro_loss.h"

void bl_micro_loss_begin(BlMicroLoss *ml, const BlLossConfig *lc, BlHiddenLossFn hidden_loss,
                         int n_layers, float weight, BlStepResult *acc) {
    double lw_sum = 0.0;
    for (int l = 0; l < n_layers; l++) lw_sum += lc->layer_w ? lc->layer_w[l] : 1.0;
    *ml = (BlMicroLoss){.lc = lc, .hidden_loss = hidden_loss, .weight = weight, .lw_sum = lw_sum,
                        .acc = acc, .ce0 = acc->ce, .kl0 = acc->kl, .tk0 = acc->topk,
                        .cos0 = acc->cos, .mag0 = acc->mag};
}

void bl_micro_loss_hidden(BlMicroLoss *ml, int l, const float *hs, const float *ht, float *dh,
                          const uint8_t *mask, int M, int D) {
    const BlLossConfig *lc = ml->lc;
    if ((lc->w_cos == 0.0f && lc->w_mag == 0.0f) || ml->lw_sum == 0.0) return;
    double f = (lc->layer_w ? lc->layer_w[l] : 1.0) / ml->lw_sum;
    float *dhs[1] = {dh};
    double mag = 0.0;
    double cs = ml->hidden_loss(dhs, (float)(lc->w_cos * f * ml->weight),
                                (float)(lc->w_mag * f * ml->weight), &hs, &ht, NULL, 1, mask, M,
                                D, &mag);
    ml->acc->cos += ml->weight * f * cs;
    ml->acc->mag += ml->weight * f * mag;
}

void bl_micro_loss_end(const BlMicroLoss *ml) {
    const BlLossConfig *lc = ml->lc;
    BlStepResult *acc = ml->acc;
    acc->total += lc->w_ce * (acc->ce - ml->ce0) + lc->w_kl * (acc->kl - ml->kl0) +
                  lc->w_topk * (acc->topk - ml->tk0) + lc->w_cos * (acc->cos - ml->cos0) +
                  lc->w_mag * (acc->mag - ml->mag0);
}
