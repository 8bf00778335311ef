/* adamw.h - AdamW (decoupled weight decay, bias-corrected moments) over flat
 * parameter tensors, plus the step guards the trainer runs first: the global
 * gradient norm with clipping, and a non-finite check so that a bad step can
 * be skipped without touching weights or optimizer state. */
#ifndef BITLAB_ADAMW_H
#define BITLAB_ADAMW_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} BlAdamWConfig;

/* The moments of one tensor; t counts the steps taken since the last reset. */
typedef struct {
    float *m, *v;
    size_t n;
    long t;
} BlAdamWState;

/* One trainable tensor and its gradient, as the guards see them. */
typedef struct {
    float *p;
    float *g;
    size_t n;
} BlParamRef;

int bl_adamw_init(BlAdamWState *s, size_t n, BlError *err);
void bl_adamw_free(BlAdamWState *s);
/* Zero moments and step count, e.g. when a new LoRA adapter takes over. */
void bl_adamw_reset(BlAdamWState *s);

/* t += 1; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
 * p −= lr·wd·p;  p −= lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)   (PyTorch AdamW). */
void bl_adamw_step(float *p, const float *g, BlAdamWState *s, const BlAdamWConfig *c);

/* Whether bl_adamw_step on (p, g, m, v) of n values as step number t (≥ 1:
 * a state's t after the step's increment) would leave every updated p, m
 * and v finite (no NaN, no ±Inf): the step's own element arithmetic, the
 * same floats it would write, nothing written. True for n = 0. The
 * backend op adamw_check (backend/backend.h) has this contract. */
bool bl_adamw_check(const float *p, const float *g, const float *m, const float *v, size_t n,
                    long t, const BlAdamWConfig *c);

/* bl_adamw_check for bl_adamw_step(p, g, s, c): (p, g, s->m, s->v, s->n,
 * s->t + 1, c). */
bool bl_adamw_step_finite(const float *p, const float *g, const BlAdamWState *s,
                          const BlAdamWConfig *c);

/* √(Σ g²) over all tensors, accumulated in double. */
double bl_grad_norm(const BlParamRef *ps, int n);

/* Scales every gradient by c = max_norm / (norm + 1e-6) when c < 1, as
 * torch.nn.utils.clip_grad_norm_ (max_norm <= 0 disables); returns the norm
 * before clipping. */
double bl_grad_clip(const BlParamRef *ps, int n, float max_norm);

/* True when any gradient element is NaN or ±Inf. */
bool bl_grad_nonfinite(const BlParamRef *ps, int n);

#endif
