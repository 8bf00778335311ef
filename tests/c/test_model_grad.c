/* test_model_grad.c - the whole student's gradients, as the trainer
 * (train/trainer.h) on the CPU backend computes them (downloaded with
 * bl_trainer_download_grads), on tiny random models built in C (llama, qwen2
 * with q/k/v biases, phi3 with fused linears):
 *
 *  1. central finite differences of the full loss (CE + KL + 1−cos + mag,
 *     layer weights, a loss mask, padding) w.r.t. sampled entries of the
 *     trainable adapter's A and B, the SubLN weights and the post-attention
 *     norm weights, at λ = 0 with activations unquantised (the smooth case);
 *  2. at λ = 1 / 8 bits (where FD is meaningless) the STE chain inside the
 *     model: with a dense ΔW beside the adapter, dL/dΔW = G = dyᵀ·xq and the
 *     adapter must get exactly dA = s·Bᵀ·G, dB = s·G·Aᵀ;
 *  3. λ = 0, 16 bits, a fresh adapter: the student forward equals the teacher
 *     forward (nn/forward.c): the reference's (tests/c/ref/train_forward.c)
 *     output by output, the trainer's through its KL and cosine losses (0);
 *  4. the reference's GEMM attention backward equals bl_attention_backward;
 *  5. gradient accumulation: two micro-batches of one sequence with weight ½
 *     give the gradients and losses of the batch of both (equal lengths, so
 *     both weigh the same in the batch mean).
 *
 * FD runs on the float forward with the loss summed in double, with the
 * fourth-order stencil at h = 2e-2: truncation is O(h⁴) and the float
 * rounding of the forward leaves ~1e-5 of noise in the estimate, so
 * |analytic − FD| <= 1.5e-2·|FD| + 2e-5 holds for a correct backward while a
 * wrong term moves gradients of 1e-3..1e-1 by O(10%). (The tight check of
 * the same gradients is the float64 PyTorch parity, test_distill_step_parity.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/forward.h"
#include "ops/ops.h"
#include "check.h"
#include "tiny_model.h"
#include "train/trainer.h"
#include "train_forward.h"

/* FD tolerance: |analytic − FD| <= FD_REL·|FD| + FD_ABS, the absolute part
 * a few times the noise the float forward's rounding leaves in the stencil
 * (measured: ~1e-5 at h = 2e-2) */
#define FD_REL 1.5e-2
#define FD_ABS 2e-5

enum { B = 2, T = 7 };
static const int TOKENS[B * T] = {3, 17, 5, 30, 8, 1, 22, 9, 14, 2, 27, 11, 0, 0};
static const int LENS[B] = {7, 5};
static const char *ARCH_NAMES[] = {"llama", "qwen2", "phi3"};

/* Pushes an adapter and gives its B small random values (so dA != 0). */
static void add_adapter(BlStudent *st, int r, float alpha, uint64_t seed) {
    BlError err;
    if (bl_student_add_adapter(st, r, alpha, seed, &err)) {
        CHECK(0, "add_adapter: %s", err.msg);
        return;
    }
    for (int l = 0; l < st->model->cfg.n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlLoraStack *s = &bl_student_linear(st, l, k)->lora;
            BlLoraAdapter *a = &s->ad[s->n - 1];
            for (int i = 0; i < s->out * r; i++) a->B[i] = 0.1f * tiny_frand();
        }
}

/* The trainer on the CPU backend for B x T, top-K buffers of K (0: none),
 * the teacher's hidden states when the mix has a hidden loss. */
static int build_trainer(BlTrainer *tr, BlStudent *st, const BlLossConfig *lc, int K,
                         BlError *err) {
    BlTrainerShape sh = {.batch = B, .seq = T, .topk = K,
                         .hidden = lc->w_cos != 0.0f || lc->w_mag != 0.0f, .teacher_cache = true};
    return bl_build_trainer(tr, bl_backend_cpu(), st, &sh, err);
}

static BlStepResult accumulate(BlTrainer *tr, const BlStepParams *p, const int *lens,
                               const uint8_t *mask) {
    BlError err;
    BlStepResult acc = {0};
    if (bl_trainer_accumulate(tr, &(BlMicroBatch){TOKENS, lens, mask, NULL, B, T},
                              1.0f, p, &acc, &err))
        CHECK(0, "accumulate: %s", err.msg);
    return acc;
}

static double loss_of(BlTrainer *tr, const BlStepParams *p, const uint8_t *mask) {
    return accumulate(tr, p, LENS, mask).total;
}

/* the accumulated gradients into the host student's, then zero on the trainer */
static void take_grads(BlTrainer *tr) {
    BlError err;
    CHECK(bl_trainer_download_grads(tr, &err) == 0, "download_grads: %s", err.msg);
    bl_trainer_zero_grads(tr);
}

// ----------------------------------------------------------------------------
// 1. finite differences at λ = 0, 16 bits

static void fd_check(BlArch arch) {
    BlModel *m = tiny_model(arch, 16, 2, 4, 24, 37, 11 + arch);
    BlStudentConfig sc = {.lambda = 0.0f, .act_bits = 16, .subln = true, .post_attn_norm = true};
    BlStudent st;
    BlTrainer tr;
    BlError err;
    float lw[2] = {1.0f, 2.0f};
    BlLossConfig lc = {.w_ce = 1.0f, .w_kl = 0.7f, .w_cos = 2.0f, .w_mag = 1.3f, .tau = 1.5f,
                       .layer_w = lw};
    BlOptConfig oc = {0};
    if (bl_build_student(&st, m, &sc, &err)) {
        CHECK(0, "build student: %s", err.msg);
        tiny_free(m);
        return;
    }
    add_adapter(&st, 3, 6.0f, 1);
    add_adapter(&st, 4, 8.0f, 2);
    for (int i = 0; i < st.n_params; i++) /* norm weights near, not at, 1 */
        if (st.param_kind[i] == BL_GRAD_KIND_NORM)
            for (size_t j = 0; j < st.params[i].n; j++) st.params[i].p[j] = 1.0f + 0.2f * tiny_frand();
    if (build_trainer(&tr, &st, &lc, 0, &err)) {
        CHECK(0, "build trainer: %s", err.msg);
        bl_free_student(&st);
        tiny_free(m);
        return;
    }
    BlStepParams sp = bl_step_params(&st, &lc, &oc);
    uint8_t mask[B * T];
    for (int i = 0; i < B * T; i++) mask[i] = i != 2;
    loss_of(&tr, &sp, mask);
    take_grads(&tr);
    /* the analytic gradients, kept before FD's evaluations add to them */
    float **g = calloc((size_t)st.n_params, sizeof *g);
    for (int i = 0; i < st.n_params; i++) {
        g[i] = malloc(sizeof(float) * st.params[i].n);
        memcpy(g[i], st.params[i].g, sizeof(float) * st.params[i].n);
    }
    const float h = 2e-2f;
    enum { SAMPLES = 3 };
    double worst = 0.0;
    int checked = 0, seen_norm = 0;
    for (int i = 0; i < st.n_params; i++) {
        double fd[SAMPLES], an[SAMPLES];
        for (int s = 0; s < SAMPLES; s++) {
            size_t j = (size_t)((tiny_frand() * 0.5f + 0.5f) * st.params[i].n) % st.params[i].n;
            float *p = &st.params[i].p[j], v = *p;
            double l[4]; /* at v − 2h, v − h, v + h, v + 2h: the O(h⁴) stencil */
            float at[4] = {v - 2 * h, v - h, v + h, v + 2 * h};
            for (int e = 0; e < 4; e++) { /* the host student changed: upload it */
                *p = at[e];
                CHECK(bl_trainer_upload(&tr, &err) == 0, "upload: %s", err.msg);
                l[e] = loss_of(&tr, &sp, mask);
            }
            *p = v;
            CHECK(bl_trainer_upload(&tr, &err) == 0, "upload: %s", err.msg);
            fd[s] = (8.0 * (l[2] - l[1]) - (l[3] - l[0])) / (6.0 * ((double)at[2] - at[1]));
            an[s] = g[i][j];
        }
        for (int s = 0; s < SAMPLES; s++) {
            double d = fabs(an[s] - fd[s]), lim = FD_REL * fabs(fd[s]) + FD_ABS;
            worst = fmax(worst, d / lim);
            CHECK(d <= lim, "%s param %d (layer %d kind %d): analytic %.6g FD %.6g",
                  ARCH_NAMES[arch], i, st.param_layer[i], st.param_kind[i], an[s], fd[s]);
            checked++;
        }
        seen_norm += st.param_kind[i] == BL_GRAD_KIND_NORM;
    }
    /* every tensor was sampled: per linear A, B and SubLN, per layer the post-attention norm */
    CHECK(seen_norm > 0 && st.n_params - seen_norm > 0, "no norm or no adapter tensors");
    printf("  %s: FD of the full loss, %d entries over %d tensors (A, B, SubLN, post-attn norm): "
           "max |err|/tolerance %.2f\n", ARCH_NAMES[arch], checked, st.n_params, worst);
    for (int i = 0; i < st.n_params; i++) free(g[i]);
    free(g);
    bl_free_trainer(&tr);
    bl_free_student(&st);
    tiny_free(m);
}

// ----------------------------------------------------------------------------
// 2. STE at λ = 1, 8 bits: dA = s·Bᵀ·dΔW, dB = s·dΔW·Aᵀ

static void ste_check(BlArch arch) {
    BlModel *m = tiny_model(arch, 16, 2, 4, 24, 37, 21 + arch);
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8, .dense = true};
    BlLossConfig lc = {.w_ce = 1.0f, .w_kl = 1.0f, .w_cos = 1.0f, .w_mag = 1.0f, .tau = 2.0f};
    BlOptConfig oc = {0};
    BlStudent st;
    BlTrainer tr;
    BlError err;
    if (bl_build_student(&st, m, &sc, &err) ||
        (add_adapter(&st, 4, 8.0f, 3), build_trainer(&tr, &st, &lc, 0, &err))) {
        CHECK(0, "%s", err.msg);
        tiny_free(m);
        return;
    }
    BlStepParams sp = bl_step_params(&st, &lc, &oc);
    loss_of(&tr, &sp, NULL);
    take_grads(&tr);
    double worst = 0.0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(&st, l, k)) continue;
            BlLoraStack *s = &bl_student_linear(&st, l, k)->lora;
            BlLoraAdapter *a = &s->ad[0];
            double gmax = 0.0, emax = 0.0;
            for (int r = 0; r < a->r; r++)
                for (int j = 0; j < s->in; j++) { /* dA[r, j] = s·Σ_o B[o, r]·G[o, j] */
                    double want = 0.0;
                    for (int o = 0; o < s->out; o++)
                        want += (double)a->B[o * a->r + r] * s->ddense[o * s->in + j];
                    want *= a->scale;
                    gmax = fmax(gmax, fabs(want));
                    emax = fmax(emax, fabs(want - a->dA[r * s->in + j]));
                }
            for (int o = 0; o < s->out; o++)
                for (int r = 0; r < a->r; r++) { /* dB[o, r] = s·Σ_j G[o, j]·A[r, j] */
                    double want = 0.0;
                    for (int j = 0; j < s->in; j++)
                        want += (double)s->ddense[o * s->in + j] * a->A[r * s->in + j];
                    want *= a->scale;
                    gmax = fmax(gmax, fabs(want));
                    emax = fmax(emax, fabs(want - a->dB[o * a->r + r]));
                }
            CHECK(gmax > 0.0, "%s layer %d %s: zero gradient", ARCH_NAMES[arch], l,
                  bl_linear_kind_name(k));
            worst = fmax(worst, emax / fmax(gmax, 1e-30));
        }
    CHECK(worst < 1e-4, "%s: STE adapter gradients off the dense-ΔW formula by %.2e",
          ARCH_NAMES[arch], worst);
    printf("  %s: λ=1/8-bit STE in-model, dA = s·Bᵀ·G and dB = s·G·Aᵀ: max rel err %.2e\n",
           ARCH_NAMES[arch], worst);
    bl_free_trainer(&tr);
    bl_free_student(&st);
    tiny_free(m);
}

// ----------------------------------------------------------------------------
// 3. λ = 0, acts off, fresh adapter: student == teacher

static void teacher_check(BlArch arch) {
    BlModel *m = tiny_model(arch, 16, 2, 4, 24, 37, 31 + arch);
    BlStudentConfig sc = {.lambda = 0.0f, .act_bits = 16};
    BlStudent st;
    BlTrainState ts;
    BlForwardState fs;
    BlError err;
    int V = m->cfg.vocab_size, D = m->cfg.dim, L = m->cfg.n_layers;
    float *tl = malloc(sizeof(float) * B * T * V), *sl = malloc(sizeof(float) * B * T * V);
    float *th = malloc(sizeof(float) * L * B * T * D);
    float *hid[2] = {th, th + B * T * D};
    int ok = !bl_build_student(&st, m, &sc, &err);
    ok = ok && !bl_student_add_adapter(&st, 4, 8.0f, 7, &err);
    ok = ok && !bl_build_train_state(&ts, &st, B, T, &err);
    ok = ok && !bl_build_forward_state(&fs, m, bl_backend_cpu(), B, T, true, &err);
    ok = ok && !bl_forward(&fs, TOKENS, LENS, NULL, B, T, tl, hid, &err);
    ok = ok && !bl_train_forward(&ts, &st, TOKENS, LENS, B, T, &err);
    CHECK(ok, "%s", err.msg);
    double e = 0.0;
    if (ok) {
        bl_train_logits(&ts, 0, B * T, sl);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < LENS[b]; t++) {
                size_t r = (size_t)b * T + t;
                for (int v = 0; v < V; v++) e = fmax(e, fabs(sl[r * V + v] - tl[r * V + v]));
                for (int l = 0; l < L; l++)
                    for (int i = 0; i < D; i++)
                        e = fmax(e, fabs(bl_train_hidden(&ts, l)[r * D + i] - hid[l][r * D + i]));
            }
        CHECK(e < 1e-4, "%s: student (λ=0, 16 bits, B=0) differs from the teacher by %.2e",
              ARCH_NAMES[arch], e);
        bl_free_forward_state(&fs);
        bl_free_train_state(&ts);
    }
    /* the trainer's student forward: KL and 1 − cos against the teacher vanish */
    BlLossConfig lc = {.w_kl = 1.0f, .w_cos = 1.0f, .tau = 1.0f};
    BlOptConfig oc = {0};
    BlTrainer tr;
    if (ok && build_trainer(&tr, &st, &lc, 0, &err) == 0) {
        BlStepParams sp = bl_step_params(&st, &lc, &oc);
        BlStepResult r = accumulate(&tr, &sp, LENS, NULL);
        CHECK(fabs(r.kl) < 1e-6 && fabs(r.cos) < 1e-6,
              "%s: the trainer's student (λ=0, 16 bits, B=0) is not the teacher: KL %.3g, "
              "1 - cos %.3g", ARCH_NAMES[arch], r.kl, r.cos);
        printf("  %s: λ=0/16-bit fresh student vs teacher: reference forward max diff %.2e, "
               "trainer KL %.2e, 1 - cos %.2e\n", ARCH_NAMES[arch], e, r.kl, r.cos);
        bl_free_trainer(&tr);
    } else if (ok) {
        CHECK(0, "%s: trainer: %s", ARCH_NAMES[arch], err.msg);
    }
    bl_free_student(&st);
    free(tl);
    free(sl);
    free(th);
    tiny_free(m);
}

// ----------------------------------------------------------------------------
// 4. GEMM attention backward == the reference loops

static void attention_check(void) {
    enum { AB = 3, AT = 9, NH = 4, NKV = 2, HD = 6 };
    int lens[AB] = {9, 4, 1};
    size_t nq = (size_t)AB * AT * NH * HD, nk = (size_t)AB * AT * NKV * HD;
    float *q = tiny_rnd(nq, 0, 1), *k = tiny_rnd(nk, 0, 1), *v = tiny_rnd(nk, 0, 1);
    float *dout = tiny_rnd(nq, 0, 1), *out = malloc(sizeof(float) * nq);
    float *att = malloc(sizeof(float) * AB * NH * AT * AT), *dp = malloc(sizeof(float) * AT * AT);
    float *g[6];
    for (int i = 0; i < 6; i++) g[i] = malloc(sizeof(float) * (i % 3 == 0 ? nq : nk));
    bl_attention(out, att, q, k, v, lens, NULL, AB, AT, NH, NKV, HD);
    bl_attention_backward(g[0], g[1], g[2], dout, att, q, k, v, lens, NULL, AB, AT, NH, NKV, HD);
    bl_train_attention_backward(g[3], g[4], g[5], dout, att, q, k, v, lens, AB, AT, NH, NKV, HD, dp);
    double e = 0.0;
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < (i == 0 ? nq : nk); j++) e = fmax(e, fabs(g[i][j] - g[i + 3][j]));
    CHECK(e < 1e-5, "GEMM attention backward differs from the reference by %.2e", e);
    printf("  GEMM attention backward vs bl_attention_backward: max abs diff %.2e\n", e);
    float *bufs[] = {q, k, v, dout, out, att, dp, g[0], g[1], g[2], g[3], g[4], g[5]};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

// ----------------------------------------------------------------------------
// 5. micro-batches

static void accumulation_check(void) {
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 16, 2, 4, 24, 37, 41);
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8, .subln = true};
    BlLossConfig lc = {.w_ce = 1, .w_kl = 1, .w_topk = 1, .w_cos = 1, .w_mag = 1, .tau = 2.0f};
    BlOptConfig oc = {0};
    BlStudent st;
    BlTrainer tr;
    BlError err;
    if (bl_build_student(&st, m, &sc, &err) ||
        (add_adapter(&st, 4, 8.0f, 5), build_trainer(&tr, &st, &lc, 4, &err))) {
        CHECK(0, "%s", err.msg);
        tiny_free(m);
        return;
    }
    BlStepParams sp = bl_step_params(&st, &lc, &oc);
    const int lens[B] = {T, T};
    BlStepResult whole = {0}, parts = {0};
    int rc = bl_trainer_accumulate(&tr, &(BlMicroBatch){TOKENS, lens, NULL, NULL, B, T},
                                   1.0f, &sp, &whole, &err);
    take_grads(&tr);
    size_t n = 0;
    for (int i = 0; i < st.n_params; i++) n += st.params[i].n;
    float *g = malloc(sizeof(float) * n);
    for (int i = 0, o = 0; i < st.n_params; o += (int)st.params[i].n, i++)
        memcpy(g + o, st.params[i].g, sizeof(float) * st.params[i].n);
    for (int b = 0; rc == 0 && b < B; b++)
        rc = bl_trainer_accumulate(&tr, &(BlMicroBatch){TOKENS + b * T, lens, NULL, NULL, 1, T},
                                   0.5f, &sp, &parts, &err);
    CHECK(rc == 0, "%s", err.msg);
    take_grads(&tr);
    double gmax = 0.0, e = 0.0;
    for (int i = 0, o = 0; i < st.n_params; o += (int)st.params[i].n, i++)
        for (size_t j = 0; j < st.params[i].n; j++) {
            gmax = fmax(gmax, fabs(g[o + j]));
            e = fmax(e, fabs(g[o + j] - st.params[i].g[j]));
        }
    double le = fabs(whole.total - parts.total) / fabs(whole.total);
    CHECK(e <= 1e-5 * gmax && le < 1e-6, "micro-batches: gradients off by %.2e of max, loss by %.2e",
          e / gmax, le);
    printf("  2 micro-batches vs one batch: gradients %.2e of max, total loss %.2e relative\n",
           e / gmax, le);
    free(g);
    bl_free_trainer(&tr);
    bl_free_student(&st);
    tiny_free(m);
}

int main(void) {
    for (int a = BL_ARCH_LLAMA; a <= BL_ARCH_PHI3; a++) {
        fd_check(a);
        ste_check(a);
        teacher_check(a);
    }
    attention_check();
    accumulation_check();
    if (failures) {
        fprintf(stderr, "test_model_grad: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_model_grad: ok\n");
    return 0;
}
