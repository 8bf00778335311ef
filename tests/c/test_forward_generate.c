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
#include "tiny_model.h"

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
        bl_forward(&s, toks, &len, NULL, 1, n, logits, hidden, &err)) {
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
            bl_forward(&s, toks, lens, NULL, B, T, keep ? logits : logits2, keep ? hidden : NULL,
                       &err))
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
    CHECK(bl_forward(&s, toks, lens, NULL, B, T, logits, NULL, &err) == -1 &&
              strstr(err.msg, "vocab"),
          "an out-of-vocab token was accepted");
    CHECK(bl_forward(&s, toks, lens, NULL, B, 8, logits, NULL, &err) == -1,
          "oversized batch accepted");
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
        BlModel *m = tiny_model(archs[i], 16, 2, 4, 24, 37, 12345);
        test_batch(m);
        test_generate(m);
        tiny_free(m);
    }
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_forward_generate: ok\n");
    return 0;
}
