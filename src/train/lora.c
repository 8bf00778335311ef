/* lora.c - the LoRA stack of one linear (see lora.h). */
#include "train/lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm.h"

// ----------------------------------------------------------------------------
// deterministic init: splitmix64 → uniform in [−bound, bound)

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform_pm(uint64_t *state, float bound) {
    double u = (double)(splitmix64(state) >> 11) * 0x1.0p-53; /* [0, 1) */
    return (float)((2.0 * u - 1.0) * bound);
}

// ----------------------------------------------------------------------------
// lifetime

void bl_lora_init(BlLoraStack *s, int out, int in) {
    memset(s, 0, sizeof *s);
    s->out = out;
    s->in = in;
}

void bl_lora_free(BlLoraStack *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->ad[i].A);
        free(s->ad[i].B);
        free(s->ad[i].dA);
        free(s->ad[i].dB);
    }
    free(s->ad);
    free(s->dense);
    free(s->ddense);
    bl_lora_init(s, s->out, s->in);
}

int bl_lora_add_adapter(BlLoraStack *s, int r, float alpha, uint64_t seed, BlError *err) {
    if (r <= 0) return bl_fail(err, "LoRA rank %d must be positive", r);
    size_t na = (size_t)r * s->in, nb = (size_t)s->out * r;
    BlLoraAdapter a = {.r = r, .alpha = alpha, .scale = alpha / (float)r};
    a.A = bl_malloc(sizeof(float) * na, err);
    a.dA = a.A ? bl_calloc(na, sizeof(float), err) : NULL;
    a.B = a.dA ? bl_calloc(nb, sizeof(float), err) : NULL;
    a.dB = a.B ? bl_calloc(nb, sizeof(float), err) : NULL;
    BlLoraAdapter *grown = a.dB ? realloc(s->ad, sizeof *s->ad * (s->n + 1)) : NULL;
    if (!grown) {
        if (a.dB) bl_fail(err, "out of memory growing a LoRA stack to %d adapters", s->n + 1);
        free(a.A);
        free(a.dA);
        free(a.B);
        free(a.dB);
        return -1;
    }
    s->ad = grown;
    float bound = 1.0f / sqrtf((float)s->in);
    uint64_t st = seed;
    for (size_t i = 0; i < na; i++) a.A[i] = uniform_pm(&st, bound);
    if (s->n > 0) { /* freeze the previous newest */
        BlLoraAdapter *prev = &s->ad[s->n - 1];
        free(prev->dA);
        free(prev->dB);
        prev->dA = prev->dB = NULL;
    }
    s->ad[s->n++] = a;
    return 0;
}

int bl_lora_enable_dense(BlLoraStack *s, BlError *err) {
    if (s->dense) return 0;
    size_t n = (size_t)s->out * s->in;
    s->dense = bl_calloc(n, sizeof(float), err);
    s->ddense = s->dense ? bl_calloc(n, sizeof(float), err) : NULL;
    if (!s->ddense) {
        free(s->dense);
        s->dense = NULL;
        return -1;
    }
    return 0;
}

void bl_lora_zero_grad(BlLoraStack *s) {
    if (s->n > 0) {
        BlLoraAdapter *a = &s->ad[s->n - 1];
        memset(a->dA, 0, sizeof(float) * a->r * s->in);
        memset(a->dB, 0, sizeof(float) * s->out * a->r);
    }
    if (s->ddense) memset(s->ddense, 0, sizeof(float) * s->out * s->in);
}

// ----------------------------------------------------------------------------
// merge and backward

void bl_lora_merge(float *dst, const float *w, const BlLoraStack *s) {
    size_t n = (size_t)s->out * s->in;
    if (dst != w) memcpy(dst, w, sizeof(float) * n);
    for (int i = 0; i < s->n; i++) { /* dst[out,in] += scale · B[out,r] · A[r,in] */
        const BlLoraAdapter *a = &s->ad[i];
        bl_gemm(false, false, s->out, s->in, a->r, a->scale, a->B, a->r, a->A, s->in, 1.0f, dst, s->in);
    }
    if (s->dense)
        for (size_t i = 0; i < n; i++) dst[i] += s->dense[i];
}

size_t bl_lora_scratch_floats(const BlLoraStack *s, int M) {
    return s->n > 0 ? (size_t)M * s->ad[s->n - 1].r : 0;
}

void bl_lora_backward(BlLoraStack *s, const float *dy, const float *x, int M, float *scratch) {
    int out = s->out, in = s->in;
    if (s->n > 0) {
        BlLoraAdapter *a = &s->ad[s->n - 1];
        int r = a->r;
        /* u[M,r] = x[M,in]·A[r,in]ᵀ ; dB[out,r] += scale·dy[M,out]ᵀ·u */
        bl_gemm(false, true, M, r, in, 1.0f, x, in, a->A, in, 0.0f, scratch, r);
        bl_gemm(true, false, out, r, M, a->scale, dy, out, scratch, r, 1.0f, a->dB, r);
        /* v[M,r] = dy[M,out]·B[out,r] ; dA[r,in] += scale·vᵀ·x */
        bl_gemm(false, false, M, r, out, 1.0f, dy, out, a->B, r, 0.0f, scratch, r);
        bl_gemm(true, false, r, in, M, a->scale, scratch, r, x, in, 1.0f, a->dA, in);
    }
    if (s->ddense) /* ddense[out,in] += dyᵀ·x */
        bl_gemm(true, false, out, in, M, 1.0f, dy, out, x, in, 1.0f, s->ddense, in);
}
