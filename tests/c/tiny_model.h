/* tiny_model.h - a seeded random Llama-family model built in memory, for the
 * training tests (header-only: each test is one executable). */
#ifndef BITLAB_TEST_TINY_MODEL_H
#define BITLAB_TEST_TINY_MODEL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "model/model.h"
#include "train/student.h"

static uint64_t tiny_rng = 0x7e57ull;

static float tiny_frand(void) { /* uniform in [−1, 1) */
    tiny_rng = tiny_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(tiny_rng >> 11) * 0x1.0p-52 - 1.0);
}

static float *tiny_rnd(size_t n, float center, float scale) {
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = center + tiny_frand() * scale;
    return x;
}

static void tiny_lin(BlLinear *l, int out, int in, int bias) {
    l->w = tiny_rnd((size_t)out * in, 0.0f, 1.7f / sqrtf((float)in)); /* ~unit-variance outputs */
    l->b = bias ? tiny_rnd((size_t)out, 0.0f, 0.1f) : NULL;
    l->out = out;
    l->in = in;
}

/* dim = n_heads·head_dim; n_kv_heads = n_heads / 2. */
static BlModel *tiny_model(BlArch arch, int dim, int n_layers, int n_heads, int hidden, int vocab,
                           uint64_t seed) {
    tiny_rng = seed;
    BlModel *m = calloc(1, sizeof *m);
    BlConfig *c = &m->cfg;
    int hd = dim / n_heads, nkv = n_heads / 2;
    *c = (BlConfig){.arch = arch, .dim = dim, .n_layers = n_layers, .n_heads = n_heads,
                    .n_kv_heads = nkv, .head_dim = hd, .hidden_dim = hidden,
                    .vocab_size = vocab, .max_seq_len = 256, .rope_theta = 10000.0f,
                    .norm_eps = 1e-5f};
    c->rope_interleaved = arch == BL_ARCH_LLAMA;
    c->qkv_bias = arch == BL_ARCH_QWEN2;
    c->fused_qkv = c->fused_gate_up = arch == BL_ARCH_PHI3;
    int qd = n_heads * hd, kvd = nkv * hd;
    m->tok_embd = tiny_rnd((size_t)vocab * dim, 0.0f, 1.0f);
    m->out_norm = tiny_rnd((size_t)dim, 1.0f, 0.2f);
    m->lm_head = tiny_rnd((size_t)vocab * dim, 0.0f, 1.0f);
    m->layers = calloc((size_t)n_layers, sizeof(BlLayer));
    for (int l = 0; l < n_layers; l++) {
        BlLayer *L = &m->layers[l];
        L->attn_norm = tiny_rnd((size_t)dim, 1.0f, 0.2f);
        L->ffn_norm = tiny_rnd((size_t)dim, 1.0f, 0.2f);
        if (c->fused_qkv) {
            tiny_lin(&L->lin[BL_LIN_QKV], qd + 2 * kvd, dim, 0);
            tiny_lin(&L->lin[BL_LIN_GATE_UP], 2 * hidden, dim, 0);
        } else {
            tiny_lin(&L->lin[BL_LIN_Q], qd, dim, c->qkv_bias);
            tiny_lin(&L->lin[BL_LIN_K], kvd, dim, c->qkv_bias);
            tiny_lin(&L->lin[BL_LIN_V], kvd, dim, c->qkv_bias);
            tiny_lin(&L->lin[BL_LIN_GATE], hidden, dim, 0);
            tiny_lin(&L->lin[BL_LIN_UP], hidden, dim, 0);
        }
        tiny_lin(&L->lin[BL_LIN_O], dim, qd, 0);
        tiny_lin(&L->lin[BL_LIN_DOWN], dim, hidden, 0);
    }
    return m;
}

static void tiny_free(BlModel *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        BlLayer *L = &m->layers[l];
        free(L->attn_norm);
        free(L->ffn_norm);
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            free(L->lin[k].w);
            free(L->lin[k].b);
        }
    }
    free(m->layers);
    free(m->tok_embd);
    free(m->out_norm);
    free(m->lm_head);
    free(m);
}

/* A rank-3 adapter with random B (so ΔW != 0) and SubLN / post-attention
 * norm weights away from 1: a student whose every trainable part matters. */
static inline int tiny_perturb_student(BlStudent *st, BlError *err) {
    if (bl_student_add_adapter(st, 3, 6.0f, 7, err)) return -1;
    const BlConfig *c = &st->model->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlStudentLinear *sl = bl_student_linear(st, l, k);
            BlLoraAdapter *a = &sl->lora.ad[sl->lora.n - 1];
            for (int i = 0; i < sl->lora.out * a->r; i++) a->B[i] = 0.3f * tiny_frand();
            for (int i = 0; sl->subln && i < sl->lora.in; i++) sl->subln[i] += 0.3f * tiny_frand();
        }
        for (int i = 0; st->post_norm && i < c->dim; i++)
            st->post_norm[(size_t)l * c->dim + i] += 0.3f * tiny_frand();
    }
    return 0;
}

#endif
