/* adamw.c - AdamW and the gradient guards (see adamw.h). */
#include "ops/adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int bl_adamw_init(BlAdamWState *s, size_t n, BlError *err) {
    memset(s, 0, sizeof *s);
    s->m = bl_calloc(n, sizeof(float), err);
    s->v = s->m ? bl_calloc(n, sizeof(float), err) : NULL;
    if (!s->v) {
        free(s->m);
        s->m = NULL;
        return -1;
    }
    s->n = n;
    return 0;
}

void bl_adamw_free(BlAdamWState *s) {
    free(s->m);
    free(s->v);
    memset(s, 0, sizeof *s);
}

void bl_adamw_reset(BlAdamWState *s) {
    memset(s->m, 0, sizeof(float) * s->n);
    memset(s->v, 0, sizeof(float) * s->n);
    s->t = 0;
}

/* The constants of step t, and the update of one element: the one place
 * AdamW's arithmetic is written, for the step and for its guard. */
typedef struct {
    float step, rbc2, decay;
} AdamWConsts;

static AdamWConsts adamw_consts(const BlAdamWConfig *c, long t) {
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    return (AdamWConsts){.step = (float)(c->lr / bc1), .rbc2 = (float)(1.0 / sqrt(bc2)),
                         .decay = 1.0f - c->lr * c->weight_decay};
}

static inline void adamw_elem(float *p, float g, float *m, float *v, const BlAdamWConfig *c,
                              AdamWConsts k) {
    *m = c->beta1 * *m + (1.0f - c->beta1) * g;
    *v = c->beta2 * *v + (1.0f - c->beta2) * g * g;
    *p = *p * k.decay - k.step * *m / (sqrtf(*v) * k.rbc2 + c->eps);
}

void bl_adamw_step(float *p, const float *g, BlAdamWState *s, const BlAdamWConfig *c) {
    s->t++;
    AdamWConsts k = adamw_consts(c, s->t);
    for (size_t i = 0; i < s->n; i++) adamw_elem(&p[i], g[i], &s->m[i], &s->v[i], c, k);
}

bool bl_adamw_check(const float *p, const float *g, const float *m, const float *v, size_t n,
                    long t, const BlAdamWConfig *c) {
    AdamWConsts k = adamw_consts(c, t);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        float qi = p[i], mi = m[i], vi = v[i];
        adamw_elem(&qi, g[i], &mi, &vi, c, k);
        ok &= isfinite(qi) && isfinite(mi) && isfinite(vi); /* no branch: vectorises */
    }
    return ok;
}

bool bl_adamw_step_finite(const float *p, const float *g, const BlAdamWState *s,
                          const BlAdamWConfig *c) {
    return bl_adamw_check(p, g, s->m, s->v, s->n, s->t + 1, c);
}

double bl_grad_norm(const BlParamRef *ps, int n) {
    double ss = 0.0;
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < ps[k].n; i++) ss += (double)ps[k].g[i] * ps[k].g[i];
    return sqrt(ss);
}

double bl_grad_clip(const BlParamRef *ps, int n, float max_norm) {
    double norm = bl_grad_norm(ps, n);
    double c = max_norm / (norm + 1e-6);
    if (max_norm > 0.0f && c < 1.0) {
        float f = (float)c;
        for (int k = 0; k < n; k++)
            for (size_t i = 0; i < ps[k].n; i++) ps[k].g[i] *= f;
    }
    return norm;
}

bool bl_grad_nonfinite(const BlParamRef *ps, int n) {
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < ps[k].n; i++)
            if (!isfinite(ps[k].g[i])) return true;
    return false;
}
