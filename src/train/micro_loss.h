/* micro_loss.h - the loss bookkeeping of one micro-batch (the trainer's,
 * and the test reference's in tests/c/ref): the hidden-
 * state losses added layer by layer during the backward, each layer
 * weighted by layer_w[l] / Σ layer_w, and the step total as the configured
 * mix of the parts this micro-batch added. */
#ifndef BL_MICRO_LOSS_H
#define BL_MICRO_LOSS_H

#include <stdint.h>

#include "train/trainer.h"

/* bl_hidden_loss's signature (the CPU reference, or a backend's) */
typedef double (*BlHiddenLossFn)(float *const *dhs, float w_cos, float w_mag,
                                 const float *const *hs, const float *const *ht,
                                 const float *layer_w, int n_layers, const uint8_t *mask, int M,
                                 int D, double *mag);

typedef struct {
    const BlLossConfig *lc;
    BlHiddenLossFn hidden_loss;
    float weight;                     /* the micro-batch's share of the step */
    double lw_sum;                    /* Σ layer weights */
    BlStepResult *acc;
    double ce0, kl0, tk0, cos0, mag0; /* acc's parts before this micro-batch */
} BlMicroLoss;

/* Starts a micro-batch (before any of its losses reach acc). */
void bl_micro_loss_begin(BlMicroLoss *ml, const BlLossConfig *lc, BlHiddenLossFn hidden_loss,
                         int n_layers, float weight, BlStepResult *acc);

/* Layer l's cosine / magnitude losses over M rows of D (rows selected by
 * mask): the gradient added into dh, the values into acc. hs, ht, dh and
 * mask live where hidden_loss reads them. */
void bl_micro_loss_hidden(BlMicroLoss *ml, int l, const float *hs, const float *ht, float *dh,
                          const uint8_t *mask, int M, int D);

/* Adds the weighted sum of what this micro-batch added to the parts into
 * acc->total. */
void bl_micro_loss_end(const BlMicroLoss *ml);

#endif
