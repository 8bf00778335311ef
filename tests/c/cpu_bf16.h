/* cpu_bf16.h - the CUDA backend's rounding (kernels/README.md, "Numeric
 * formats") on the CPU, for the device harnesses (test_cuda_step.c,
 * test_student_eval_device.c): bf16 rounding of values and of a model's
 * frozen matrices, and "cpu-bf16", the CPU backend with the CUDA backend's
 * operand formats. Header-only (each test is one executable). */
#ifndef BITLAB_TEST_CPU_BF16_H
#define BITLAB_TEST_CPU_BF16_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "model/model.h"


/* x rounded to the nearest bf16, ties to even (__float2bfloat16_rn) */
static inline float bf16_round(float x) {
    if (isnan(x)) return x;
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, sizeof u);
    return x;
}

/* Every frozen matrix of m rounded to bf16 in place (the ones
 * bl_device_model_build uploads through weights_upload): the reference
 * then sees the W the device holds. Norm weights and biases stay fp32. */
static inline void bf16_round_model(BlModel *m) {
    const BlConfig *c = &m->cfg;
    size_t VD = (size_t)c->vocab_size * c->dim;
    for (size_t i = 0; i < VD; i++) m->tok_embd[i] = bf16_round(m->tok_embd[i]);
    if (m->lm_head != m->tok_embd)
        for (size_t i = 0; i < VD; i++) m->lm_head[i] = bf16_round(m->lm_head[i]);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            BlLinear *lin = &m->layers[l].lin[k];
            for (size_t i = 0; lin->w && i < (size_t)lin->out * lin->in; i++)
                lin->w[i] = bf16_round(lin->w[i]);
        }
}

static inline float *bf16_copy(const float *x, size_t n) {
    float *y = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) y[i] = bf16_round(x[i]);
    return y;
}

/* The CPU backend with the CUDA backend's operand formats: frozen weights
 * bf16 (weights_upload rounds), the GEMMs of matmul / matmul_backward on
 * bf16-rounded operands with fp32 accumulation (the bias gradient from the
 * fp32 dy, as bias_grad_kernel). Everything else is the CPU's. */
static BlBackend cpu_bf16_be;

static inline void bf16_matmul(float *y, const float *x, const float *w, const float *bias, int M,
                        int N, int K) {
    float *x16 = bf16_copy(x, (size_t)M * K), *w16 = bf16_copy(w, (size_t)N * K);
    bl_backend_cpu()->matmul(y, x16, w16, bias, M, N, K);
    free(x16);
    free(w16);
}

static inline void bf16_matmul_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                                 const float *w, int M, int N, int K) {
    const BlBackend *cpu = bl_backend_cpu();
    if (dx || dw) {
        float *dy16 = bf16_copy(dy, (size_t)M * N);
        float *x16 = dw ? bf16_copy(x, (size_t)M * K) : NULL;
        float *w16 = dx ? bf16_copy(w, (size_t)N * K) : NULL;
        cpu->matmul_backward(dx, dw, NULL, dy16, x16, w16, M, N, K);
        free(dy16);
        free(x16);
        free(w16);
    }
    if (db) cpu->matmul_backward(NULL, NULL, db, dy, x, w, M, N, K);
}

static inline float *bf16_weights_upload(const float *host, size_t n, BlError *err) {
    float *w = bl_backend_cpu()->weights_upload(host, n, err);
    for (size_t i = 0; w && i < n; i++) w[i] = bf16_round(w[i]);
    return w;
}

static inline const BlBackend *cpu_bf16_backend(void) {
    cpu_bf16_be = *bl_backend_cpu();
    cpu_bf16_be.name = "cpu-bf16";
    cpu_bf16_be.matmul = bf16_matmul;
    cpu_bf16_be.matmul_backward = bf16_matmul_backward;
    cpu_bf16_be.weights_upload = bf16_weights_upload;
    return &cpu_bf16_be;
}

#endif
