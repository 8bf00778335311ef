/* test_forward_generate.c - self-consistency of the batch forward and the
 * KV-cache decoder on hand-built random models of each arch (llama, qwen2's
 * q/k/v biases, phi3's fused qkv/gate_up): a sequence's rows do not depend on
 * what it is batched with or on padding, the saved-probability and stack
 * attention paths agree, and greedy decoding equals the argmax of the full
 * forward. Numerical parity against numpy is tests/py/test_forward_parity.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/forward.h"
#include "nn/generate.h"

#include "check.h"

static unsigned seed = 12345;

static float *rnd(int n, float scale) {
    float *x = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = scale * ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f);
    }
    return x;
}

static void set_lin(BlLinear *l, int out, int in, int bias) {
    l->w = rnd(out * in, 1.0f / sqrtf((float)in));
    l->b = bias ? rnd(out, 0.1f) : NULL;
    l->out = out;
    l->in = in;
}

static BlModel *tiny_model(BlArch arch) {
    BlModel *m = calloc(1, sizeof *m);
    BlConfig *c = &m->cfg;
    *c = (BlConfig){.arch = arch, .dim = 16, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                    .head_dim = 4, .hidden_dim = 24, .vocab_size = 37, .max_seq_len = 64,
                    .rope_theta = 10000.0f, .norm_eps = 1e-5f};
    c->rope_interleaved = arch == BL_ARCH_LLAMA;
    c->qkv_bias = arch == BL_ARCH_QWEN2;
    c->fused_qkv = c->fused_gate_up = arch == BL_ARCH_PHI3;
    int qd = 16, kvd = 8, H = 24;
    m->tok_embd = rnd(37 * 16, 1.0f);
    m->out_norm = rnd(16, 1.0f);
    m->lm_head = rnd(37 * 16, 0.5f);
    m->layers = calloc(2, sizeof(BlLayer));
    for (int l = 0; l < 2; l++) {
        BlLayer *L = &m->layers[l];
        L->attn_norm = rnd(16, 1.0f);
        L->ffn_norm = rnd(16, 1.0f);
        if (c->fused_qkv) {
            set_lin(&L->lin[BL_LIN_QKV], qd + 2 * kvd, 16, 0);
            set_lin(&L->lin[BL_LIN_GATE_UP], 2 * H, 16, 0);
        } else {
            set_lin(&L->lin[BL_LIN_Q], qd, 16, c->qkv_bias);
            set_lin(&L->lin[BL_LIN_K], kvd, 16, c->qkv_bias);
            set_lin(&L->lin[BL_LIN_V], kvd, 16, c->qkv_bias);
            set_lin(&L->lin[BL_LIN_GATE], H, 16, 0);
            set_lin(&L->lin[BL_LIN_UP], H, 16, 0);
        }
        set_lin(&L->lin[BL_LIN_O], 16, qd, 0);
        set_lin(&L->lin[BL_LIN_DOWN], 16, H, 0);
    }
    return m;
}

static void free_tiny(BlModel *m) {
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

static float max_diff(const float *a, const float *b, int n) {
    float d = 0;
    for (int i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

/* logits of one sequence alone, B = 1 */
static void forward_one(const BlModel *m, const int *toks, int n, float *logits, float **hidden) {
    BlForwardState s;
    BlError err;
    int len = n;
    if (bl_build_forward_state(&s, m, bl_backend_cpu(), 1, n, true, &err) ||
        bl_forward(&s, toks, &len, 1, n, logits, hidden, &err)) {
        CHECK(0, "forward_one: %s", err.msg);
    }
    bl_free_forward_state(&s);
}

static void test_batch(const BlModel *m) {
    enum { B = 3, T = 7, V = 37, D = 16 };
    int lens[B] = {7, 4, 1}, toks[B * T];
    for (int i = 0; i < B * T; i++) toks[i] = (i * 11 + 3) % V;
    toks[T + 5] = -99; /* padding may hold anything */
    float *logits = malloc(B * T * V * sizeof(float)), *logits2 = malloc(B * T * V * sizeof(float));
    float *h0 = malloc(B * T * D * sizeof(float)), *h1 = malloc(B * T * D * sizeof(float));
    float *hidden[2] = {h0, h1};
    for (int keep = 0; keep < 2; keep++) {
        BlForwardState s;
        BlError err;
        if (bl_build_forward_state(&s, m, bl_backend_cpu(), 4, 8, keep, &err) ||
            bl_forward(&s, toks, lens, B, T, keep ? logits : logits2, keep ? hidden : NULL, &err))
            CHECK(0, "%s", err.msg);
        bl_free_forward_state(&s);
    }
    int ok_rows = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < lens[b]; t++)
            if (max_diff(logits + (b * T + t) * V, logits2 + (b * T + t) * V, V) > 1e-5f) ok_rows = 0;
    CHECK(ok_rows, "%s: keep_att and stack attention differ", bl_arch_name(m->cfg.arch));

    for (int b = 0; b < B; b++) {
        float one[T * V], oh0[T * D], oh1[T * D], *oh[2] = {oh0, oh1};
        forward_one(m, toks + b * T, lens[b], one, oh);
        CHECK(max_diff(one, logits + b * T * V, lens[b] * V) < 1e-5f,
              "%s: sequence %d's logits depend on its batch", bl_arch_name(m->cfg.arch), b);
        CHECK(max_diff(oh1, h1 + b * T * D, lens[b] * D) < 1e-5f &&
                  max_diff(oh0, h0 + b * T * D, lens[b] * D) < 1e-5f,
              "%s: sequence %d's hidden states depend on its batch", bl_arch_name(m->cfg.arch), b);
    }

    BlForwardState s;
    BlError err;
    CHECK(bl_build_forward_state(&s, m, bl_backend_cpu(), 3, 7, false, &err) == 0, "build");
    toks[2] = V;
    CHECK(bl_forward(&s, toks, lens, B, T, logits, NULL, &err) == -1 && strstr(err.msg, "vocab"),
          "an out-of-vocab token was accepted");
    CHECK(bl_forward(&s, toks, lens, B, 8, logits, NULL, &err) == -1, "oversized batch accepted");
    bl_free_forward_state(&s);
    free(logits);
    free(logits2);
    free(h0);
    free(h1);
}

static int count_tokens(int tok, void *user) {
    (void)tok;
    return ++*(int *)user == 100;
}

static void test_generate(BlModel *m) {
    enum { P = 3, N = 12, V = 37 };
    int seq[P + N] = {5, 17, 2}, got[N], n = 0, calls = 0;
    BlError err;
    m->n_stop_tokens = 0;
    CHECK(bl_generate_greedy(m, bl_backend_cpu(), seq, P, N, count_tokens, &calls, got, &n, &err) == 0,
          "%s", err.msg);
    CHECK(n == N && calls == N, "generated %d tokens, %d callbacks", n, calls);
    float logits[(P + N) * V];
    for (int i = 0; i < N; i++) {
        forward_one(m, seq, P + i, logits, NULL);
        seq[P + i] = bl_argmax(logits + (P + i - 1) * V, V);
        CHECK(got[i] == seq[P + i], "%s: cached token %d = %d, full forward says %d",
              bl_arch_name(m->cfg.arch), i, got[i], seq[P + i]);
    }
    /* a stop token ends generation before it is emitted */
    m->stop_tokens[0] = got[4];
    m->n_stop_tokens = 1;
    int first = 0;
    while (got[first] != got[4]) first++;
    CHECK(bl_generate_greedy(m, bl_backend_cpu(), seq, P, N, NULL, NULL, got, &n, &err) == 0 &&
              n == first,
          "stop token: %d tokens, want %d", n, first);
    m->n_stop_tokens = 0;
}

int main(void) {
    float x[] = {1, 3, 3, 2};
    CHECK(bl_argmax(x, 4) == 1, "argmax ties go to the lowest id");
    BlArch archs[] = {BL_ARCH_LLAMA, BL_ARCH_QWEN2, BL_ARCH_PHI3};
    for (int i = 0; i < 3; i++) {
        BlModel *m = tiny_model(archs[i]);
        test_batch(m);
        test_generate(m);
        free_tiny(m);
    }
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_forward_generate: ok\n");
    return 0;
}
