/* test_sample.c - batched KV-cache sampling (nn/sample.h) on hand-built
 * random models of each arch: greedy rows equal bl_generate_greedy's tokens
 * at batch 1, 3 and 16 (with rows stopping at different steps and more
 * requests than slots); every step's logits equal the full uncached forward
 * over the row's sequence so far; seeded samples are reproducible and the
 * same at batch 1 and 16; a tiny top_p is greedy; bad parameters are refused
 * by name. The draw's statistics against numpy: tests/py/test_sample.py. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/forward.h"
#include "nn/generate.h"
#include "nn/sample.h"

#include "check.h"
#include "tiny_model.h"

enum { N_REQ = 20, MAX_PROMPT = 9, MAX_NEW = 12, V = 37, DIM = 16, HIDDEN = 24, LAYERS = 2 };

static int prompt_buf[N_REQ][MAX_PROMPT], prompt_len[N_REQ];
static const int *prompts[N_REQ];

static void make_prompts(void) {
    uint32_t x = 12345;
    for (int r = 0; r < N_REQ; r++) {
        prompt_len[r] = 1 + (r * 7) % MAX_PROMPT; /* 1..9, in no order */
        for (int t = 0; t < prompt_len[r]; t++) {
            x = x * 1664525u + 1013904223u;
            prompt_buf[r][t] = (int)(x >> 8) % V;
        }
        prompts[r] = prompt_buf[r];
    }
}

/* The logits each draw saw, by (request, step). */
typedef struct {
    float logits[N_REQ][MAX_NEW][V];
    int token[N_REQ][MAX_NEW];
    int calls;
} Seen;

static int observe(void *user, int req, int step, int token, const float *logits, int vocab) {
    Seen *s = user;
    if (req >= 0 && req < N_REQ && step >= 0 && step < MAX_NEW && vocab == V) {
        memcpy(s->logits[req][step], logits, sizeof(float) * V);
        s->token[req][step] = token;
    }
    s->calls++;
    return 0;
}

/* The rounding bound of a logit: every value is a chain of float32 dot
 * products (K = dim for q/k/v/gate/up, hidden for down, up to the sequence
 * length for attention, dim for the LM head), each off by at most
 * K·ε·(sum of |terms|); the batched and single-row GEMMs may round every one
 * of them differently. 8·ε per accumulated term, scaled by the logits'
 * magnitude, bounds that with margin for the tiny model's unit-scale
 * activations. */
static float logit_tol(const float *logits) {
    float mx = 1.0f;
    for (int v = 0; v < V; v++) mx = fmaxf(mx, fabsf(logits[v]));
    int terms = LAYERS * (3 * DIM + HIDDEN + MAX_PROMPT + MAX_NEW) + DIM;
    return 8.0f * FLT_EPSILON * (float)terms * mx;
}

static float top2_margin(const float *x) {
    int a = bl_argmax(x, V);
    float second = -INFINITY;
    for (int v = 0; v < V; v++)
        if (v != a) second = fmaxf(second, x[v]);
    return x[a] - second;
}

static float max_diff(const float *a, const float *b, int n) {
    float d = 0;
    for (int i = 0; i < n; i++) d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static int run(const BlModel *m, int batch, float temperature, float top_p, uint64_t seed,
               Seen *seen, int *out, int *n_out) {
    BlSampleOptions o = {.max_new = MAX_NEW, .batch = batch, .temperature = temperature,
                         .top_p = top_p, .seed = seed, .observe = seen ? observe : NULL,
                         .user = seen};
    BlSampleStats st;
    BlError err;
    if (seen) seen->calls = 0;
    if (bl_sample(m, bl_backend_cpu(), prompts, prompt_len, N_REQ, &o, out, n_out, &st, &err)) {
        CHECK(0, "bl_sample batch %d: %s", batch, err.msg);
        return -1;
    }
    long long total = 0;
    for (int r = 0; r < N_REQ; r++) total += n_out[r];
    CHECK(st.tokens == total, "stats count %lld tokens, the answers hold %lld", st.tokens, total);
    CHECK(batch > 1 || st.row_steps == st.steps, "batch 1 ran %lld rows in %lld steps",
          st.row_steps, st.steps);
    return 0;
}

/* (b) the cache is used right: each draw's logits are the last row of the
 * uncached forward over the row's prompt + answer so far */
static void check_against_full_forward(const BlModel *m, const Seen *seen, const int *out,
                                       const int *n_out, const char *what) {
    int seq[MAX_PROMPT + MAX_NEW];
    float *logits = malloc(sizeof(float) * (MAX_PROMPT + MAX_NEW) * V);
    int bad = 0, checked = 0;
    for (int r = 0; r < N_REQ; r++) {
        memcpy(seq, prompts[r], sizeof(int) * prompt_len[r]);
        memcpy(seq + prompt_len[r], out + r * MAX_NEW, sizeof(int) * n_out[r]);
        /* steps 0..n_out (the last draw is the stop token unless max_new ended the row) */
        int steps = n_out[r] < MAX_NEW ? n_out[r] + 1 : MAX_NEW;
        for (int t = 0; t < steps; t++) {
            int n = prompt_len[r] + t, len = n;
            BlForwardState s;
            BlError err;
            if (bl_build_forward_state(&s, m, bl_backend_cpu(), 1, n, true, &err) ||
                bl_forward(&s, seq, &len, NULL, 1, n, logits, NULL, &err)) {
                CHECK(0, "full forward: %s", err.msg);
                free(logits);
                return;
            }
            bl_free_forward_state(&s);
            const float *full = logits + (size_t)(n - 1) * V;
            float d = max_diff(full, seen->logits[r][t], V), tol = logit_tol(full);
            if (d > tol && bad++ < 3)
                fprintf(stderr, "%s: request %d step %d: cached logits off by %g (tol %g)\n", what,
                        r, t, d, tol);
            checked++;
        }
    }
    CHECK(bad == 0 && checked > N_REQ, "%s: %d of %d steps' logits differ from the full forward",
          what, bad, checked);
    free(logits);
}

/* (a) greedy rows against bl_generate_greedy; a row may part only at a near
 * tie (top-2 margin within twice the rounding bound) */
static void test_greedy(BlModel *m, const char *arch) {
    static Seen seen;
    int out[N_REQ * MAX_NEW], n_out[N_REQ], ref[N_REQ][MAX_NEW], n_ref[N_REQ];
    /* a stop token the answers do produce: rows then end at different steps */
    m->n_stop_tokens = 0;
    int probe[MAX_NEW], n_probe;
    BlError err;
    CHECK(bl_generate_greedy(m, bl_backend_cpu(), prompts[0], prompt_len[0], MAX_NEW, NULL, NULL,
                             probe, &n_probe, &err) == 0 && n_probe == MAX_NEW, "%s", err.msg);
    m->stop_tokens[0] = probe[3];
    m->n_stop_tokens = 1;
    int early = 0;
    for (int r = 0; r < N_REQ; r++) {
        CHECK(bl_generate_greedy(m, bl_backend_cpu(), prompts[r], prompt_len[r], MAX_NEW, NULL,
                                 NULL, ref[r], &n_ref[r], &err) == 0, "%s", err.msg);
        early += n_ref[r] < MAX_NEW;
    }
    CHECK(early >= 1 && early < N_REQ, "%s: %d of %d rows stop early: no ragged batch", arch,
          early, N_REQ);
    const int batches[] = {1, 3, 16};
    for (int bi = 0; bi < 3; bi++) {
        if (run(m, batches[bi], 0.0f, 1.0f, 1, &seen, out, n_out)) continue;
        int parted = 0, unexplained = 0;
        for (int r = 0; r < N_REQ; r++) {
            int t = 0;
            while (t < n_ref[r] && t < n_out[r] && out[r * MAX_NEW + t] == ref[r][t]) t++;
            if (t == n_ref[r] && t == n_out[r]) continue;
            parted++;
            const float *lg = seen.logits[r][t];
            if (top2_margin(lg) > 2.0f * logit_tol(lg)) unexplained++;
        }
        CHECK(unexplained == 0, "%s batch %d: %d rows differ from bl_generate_greedy at a clear "
              "margin", arch, batches[bi], unexplained);
        CHECK(parted <= 2, "%s batch %d: %d of %d rows part from bl_generate_greedy", arch,
              batches[bi], parted, N_REQ);
        if (batches[bi] > 1) {
            char what[64];
            snprintf(what, sizeof what, "%s batch %d", arch, batches[bi]);
            check_against_full_forward(m, &seen, out, n_out, what);
        }
    }
    m->n_stop_tokens = 0;
}

/* (c) seeded samples: reproducible, the same at batch 1 and 16, a tiny
 * top_p is greedy */
static void test_seeded(BlModel *m, const char *arch) {
    static Seen s1, s16;
    int o1[N_REQ * MAX_NEW], n1[N_REQ], o16[N_REQ * MAX_NEW], n16[N_REQ];
    int again[N_REQ * MAX_NEW], n_again[N_REQ];
    m->n_stop_tokens = 0;
    if (run(m, 1, 0.9f, 0.9f, 7, &s1, o1, n1) || run(m, 16, 0.9f, 0.9f, 7, &s16, o16, n16) ||
        run(m, 16, 0.9f, 0.9f, 7, NULL, again, n_again))
        return;
    CHECK(!memcmp(o16, again, sizeof o16) && !memcmp(n16, n_again, sizeof n16),
          "%s: the same seed and batch drew different samples", arch);
    int flips = 0, unexplained = 0;
    for (int r = 0; r < N_REQ; r++) {
        int t = 0;
        while (t < MAX_NEW && o1[r * MAX_NEW + t] == o16[r * MAX_NEW + t]) t++;
        if (t == MAX_NEW) continue;
        /* parted at step t: only rounding may explain it, i.e. the two runs'
         * logits agree within the bound and the same uniform draws the two
         * tokens from them */
        flips++;
        double u = bl_sample_uniform(7, r, t);
        static char scratch[V * (sizeof(int) + sizeof(double))];
        int a = bl_sample_token(s1.logits[r][t], V, 0.9f, 0.9f, u, scratch);
        int b = bl_sample_token(s16.logits[r][t], V, 0.9f, 0.9f, u, scratch);
        if (max_diff(s1.logits[r][t], s16.logits[r][t], V) > logit_tol(s1.logits[r][t]) ||
            a == b)
            unexplained++;
    }
    CHECK(unexplained == 0 && flips <= 2,
          "%s: seeded samples at batch 1 and 16 differ in %d rows (%d not by rounding)", arch,
          flips, unexplained);
    int distinct = 0;
    for (int r = 1; r < N_REQ; r++)
        distinct += memcmp(o16 + r * MAX_NEW, o16, sizeof(int) * MAX_NEW) != 0;
    CHECK(distinct > 0, "%s: every request drew the same answer", arch);
    if (run(m, 16, 0.9f, 0.9f, 8, NULL, again, n_again)) return;
    CHECK(memcmp(o16, again, sizeof o16) != 0, "%s: seed 8 drew seed 7's samples", arch);

    int greedy[N_REQ * MAX_NEW], ng[N_REQ];
    if (run(m, 16, 0.0f, 1.0f, 7, NULL, greedy, ng) || run(m, 16, 1.0f, 1e-6f, 99, NULL, again, n_again))
        return;
    CHECK(!memcmp(greedy, again, sizeof greedy), "%s: top_p 1e-6 is not greedy", arch);
}

static void test_draw(void) {
    static char scratch[8 * (sizeof(int) + sizeof(double))];
    float x[] = {1, 3, 3, 2};
    CHECK(bl_sample_token(x, 4, 0.0f, 1.0f, 0.99, scratch) == 1, "greedy ties go to the lowest id");
    CHECK(bl_sample_token(x, 4, 1.0f, 1e-6f, 0.99, scratch) == 1, "a tiny nucleus is the argmax");
    /* top_p covering the two tied tokens: u below half their mass picks id 1, above id 2 */
    CHECK(bl_sample_token(x, 4, 1.0f, 0.5f, 0.25, scratch) == 1 &&
              bl_sample_token(x, 4, 1.0f, 0.5f, 0.75, scratch) == 2,
          "the nucleus {1, 2} is walked in id order");
    int in_range = 1;
    for (int i = 0; i < 1000; i++) {
        double u = bl_sample_uniform(3, i % 7, i);
        in_range &= u >= 0.0 && u < 1.0;
    }
    CHECK(in_range, "uniforms outside [0, 1)");
    CHECK(bl_sample_uniform(3, 0, 1) != bl_sample_uniform(3, 1, 0) &&
              bl_sample_uniform(3, 0, 1) != bl_sample_uniform(4, 0, 1),
          "the stream ignores the request, step or seed");
}

static int stop_at_once(void *user, int req, int step, int token, const float *logits, int vocab) {
    (void)req, (void)step, (void)token, (void)logits, (void)vocab;
    return ++*(int *)user >= 1;
}

static void expect_error(const BlModel *m, const int *const *p, const int *n, int n_req,
                         BlSampleOptions o, const char *word) {
    int out[4 * 300], n_out[4];
    BlError err = {{0}};
    int rc = bl_sample(m, bl_backend_cpu(), p, n, n_req, &o, out, n_out, NULL, &err);
    CHECK(rc == -1 && strstr(err.msg, word), "expected an error naming '%s', got rc %d: %s", word,
          rc, err.msg);
}

static void test_errors(const BlModel *m) {
    static int long_prompt[250];
    int ok_prompt[2] = {3, 4}, bad_tok[2] = {3, V}, n2[1] = {2}, n250[1] = {250}, n0[1] = {0};
    const int *p_ok[1] = {ok_prompt}, *p_bad[1] = {bad_tok}, *p_long[1] = {long_prompt};
    BlSampleOptions o = {.max_new = 4, .batch = 2, .temperature = 0.5f, .top_p = 0.9f};
    BlSampleOptions b = o;
    b.batch = 0;
    expect_error(m, p_ok, n2, 1, b, "batch");
    b = o, b.max_new = 0;
    expect_error(m, p_ok, n2, 1, b, "max_new");
    b = o, b.temperature = -1.0f;
    expect_error(m, p_ok, n2, 1, b, "temperature");
    b = o, b.temperature = NAN;
    expect_error(m, p_ok, n2, 1, b, "temperature");
    b = o, b.top_p = 0.0f;
    expect_error(m, p_ok, n2, 1, b, "top_p");
    b = o, b.top_p = 1.5f;
    expect_error(m, p_ok, n2, 1, b, "top_p");
    expect_error(m, p_bad, n2, 1, o, "vocab");
    expect_error(m, p_ok, n0, 1, o, "empty");
    b = o, b.max_new = 10; /* 250 + 10 > the tiny model's 256 */
    expect_error(m, p_long, n250, 1, b, "context");

    int calls = 0, out[8], n_out[1];
    BlError err;
    b = o, b.observe = stop_at_once, b.user = &calls;
    CHECK(bl_sample(m, bl_backend_cpu(), p_ok, n2, 1, &b, out, n_out, NULL, &err) == 0 &&
              calls == 1 && n_out[0] <= 1,
          "an observer's stop: rc, %d calls, %d tokens", calls, n_out[0]);
}

int main(void) {
    make_prompts();
    test_draw();
    BlArch archs[] = {BL_ARCH_LLAMA, BL_ARCH_QWEN2, BL_ARCH_PHI3};
    for (int i = 0; i < 3; i++) {
        BlModel *m = tiny_model(archs[i], DIM, LAYERS, 4, HIDDEN, V, 777 + i);
        const char *arch = bl_arch_name(archs[i]);
        test_greedy(m, arch);
        test_seeded(m, arch);
        if (i == 0) test_errors(m);
        tiny_free(m);
    }
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_sample: ok\n");
    return 0;
}
