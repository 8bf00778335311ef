/* test_step_rows.c - a step's losses are means over the selected rows of its
 * whole batch, however the batch is split into micro-batches (train/
 * trainer.h: bl_trainer_step weighs each micro-batch by its share of the
 * step's rows). One trainer takes a batch of 2·B sequences as one
 * micro-batch, another as two of B; their losses and gradient arenas agree
 * up to the rounding of a different summation order. The batches are
 * padded unevenly (the first half short, the second long, a random mask),
 * where the mean of the micro-batches' means would weigh a short
 * sequence's rows several times as much as a long one's: the test checks
 * that weighting differs from the whole batch's by far more than the
 * tolerance, so it would be caught. A micro-batch with no selected row
 * (every length 0 or 1) weighs nothing. CE + KL + hidden cosine +
 * magnitude; LoRA and dense ΔW trained. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "tiny_model.h"
#include "train/trainer.h"

enum { B = 2, T = 24, VOCAB = 37 };

/* float32 sums of at most 2·B·T rows in another order: each element's
 * rounding error is a few units of 2⁻²⁴ times the sum of its terms'
 * magnitudes; 1e-4 of the arena's norm bounds that with room, and is two
 * orders below the difference the other weighting makes (checked) */
#define TOL 1e-4

typedef struct {
    float *g;
    size_t n;
    double s[16];
} Kept;

/* the "reduction" of a one-process step: keeps the arena and the scalars */
static int keep(void *ctx, float *g, size_t n, double *s, int ns, BlError *err) {
    (void)err;
    Kept *k = ctx;
    k->g = realloc(k->g, sizeof(float) * (n ? n : 1));
    memcpy(k->g, g, sizeof(float) * n);
    memcpy(k->s, s, sizeof(double) * (size_t)ns);
    k->n = n;
    return 0;
}

/* ‖a − b‖ / ‖b‖ */
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0.0 ? sqrt(d / r) : INFINITY;
}

/* One step of the batch through tr in n_micro micro-batches of 2·B/n_micro
 * sequences: the gradient arena and losses before the update. */
static void step(BlTrainer *tr, const BlStepParams *p, const int *tokens, const int *lens,
                 const uint8_t *mask, int n_micro, Kept *k, BlStepResult *res) {
    BlError err = {{0}};
    BlMicroBatch whole = {tokens, lens, mask, NULL, 2 * B, T};
    BlMicroBatch mb = {tokens, lens, mask, NULL, 2 * B / n_micro, T};
    BlStepReduce red = {.reduce = keep, .ctx = k, .rows_total = bl_micro_batch_rows(&whole)};
    CHECK(bl_trainer_step_reduce(tr, &mb, n_micro, &red, p, res, &err) == 0, "step of %d: %s",
          n_micro, err.msg);
}

/* the case: lens and mask of 2·B sequences, the first B short */
static void run_case(const char *name, BlTrainer *whole, BlTrainer *split, const BlStepParams *p,
                     const int *lens, bool check_weighting) {
    int tokens[2 * B * T];
    uint8_t mask[2 * B * T];
    for (int i = 0; i < 2 * B * T; i++) {
        tokens[i] = (int)((tiny_frand() + 1.0f) * 0.5f * VOCAB) % VOCAB;
        mask[i] = tiny_frand() > -0.6f; /* about 80 % of the rows */
    }
    Kept kw = {0}, ks = {0};
    BlStepResult rw, rs;
    step(whole, p, tokens, lens, mask, 1, &kw, &rw);
    step(split, p, tokens, lens, mask, 2, &ks, &rs);
    CHECK(kw.n == ks.n && kw.n > 0, "%s: arenas of %zu and %zu floats", name, kw.n, ks.n);
    if (failures) return;
    double dg = rel_diff(ks.g, kw.g, kw.n);
    CHECK(dg <= TOL, "%s: two micro-batches' gradient differs from the whole batch's by %.3g", name, dg);
    const char *names[] = {"ce", "kl", "topk", "cos", "mag", "rel", "total"};
    for (int i = 0; i < 7; i++)
        CHECK(fabs(ks.s[i] - kw.s[i]) <= TOL * fabs(kw.s[i]), "%s: %s %.9g split, %.9g whole", name,
              names[i], ks.s[i], kw.s[i]);
    CHECK(rw.ce > 0 && rw.kl > 0 && rw.cos > 0 && rw.mag > 0, "%s: every loss trained (%g %g %g %g)",
          name, rw.ce, rw.kl, rw.cos, rw.mag);
    if (check_weighting) {
        /* the mean of the two micro-batches' means, by hand */
        BlError err = {{0}};
        BlStepResult acc = {0};
        bl_trainer_zero_grads(split);
        for (int i = 0; i < 2; i++)
            CHECK(bl_trainer_accumulate(split,
                                        &(BlMicroBatch){tokens + i * B * T, lens + i * B,
                                                        mask + i * B * T, NULL, B, T},
                                        0.5f, p, &acc, &err) == 0,
                  "%s: accumulate: %s", name, err.msg);
        CHECK(fabs(acc.ce - kw.s[0]) > 100 * TOL * kw.s[0],
              "%s: the mean of micro-batch means (ce %.9g) is not told from the whole batch's "
              "(%.9g): the case does not test the weighting", name, acc.ce, kw.s[0]);
        bl_trainer_zero_grads(split);
    }
    free(kw.g);
    free(ks.g);
}

int main(void) {
    const BlBackend *be = bl_backend_cpu();
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 32, 2, 4, 48, VOCAB, 5);
    BlStudentConfig sc = {.lambda = 0.6f, .act_bits = 8, .dense = true};
    BlLossConfig lc = {.w_ce = 1.0f, .w_kl = 0.5f, .w_cos = 0.3f, .w_mag = 0.1f, .tau = 2.0f};
    BlOptConfig oc = {.adamw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f},
                      .max_grad_norm = 0.0f};
    BlStudent s_whole, s_split;
    BlTrainer whole, split;
    BlError err = {{0}};
    CHECK(bl_build_student(&s_whole, m, &sc, &err) == 0 &&
              bl_student_add_adapter(&s_whole, 4, 8.0f, 3, &err) == 0 &&
              bl_build_trainer(&whole, be, &s_whole,
                               &(BlTrainerShape){.batch = 2 * B, .seq = T, .hidden = true}, &err) == 0,
          "whole: %s", err.msg);
    CHECK(bl_build_student(&s_split, m, &sc, &err) == 0 &&
              bl_student_add_adapter(&s_split, 4, 8.0f, 3, &err) == 0 &&
              bl_build_trainer(&split, be, &s_split,
                               &(BlTrainerShape){.batch = B, .seq = T, .hidden = true}, &err) == 0,
          "split: %s", err.msg);
    if (failures) return 1;
    BlStepParams p = bl_step_params(&s_whole, &lc, &oc);
    tiny_rng = 2024;
    /* full lengths first (only the mask makes the micro-batches' rows
     * differ), then uneven ones, the students an update or more along */
    int lens[2 * B];
    for (int b = 0; b < 2 * B; b++) lens[b] = T;
    run_case("full lengths", &whole, &split, &p, lens, false);
    for (int c = 0; c < 2; c++) {
        int uneven[2 * B] = {4 + c, 6, T, T - 1};
        run_case(c ? "uneven rows, again" : "uneven rows", &whole, &split, &p, uneven, true);
    }
    int empty[2 * B] = {1, 0, T, T - 3};
    run_case("a micro-batch with no selected row", &whole, &split, &p, empty, false);
    BlMicroBatch none = {(int[2 * T]){0}, (int[]){1, 0}, NULL, NULL, B, T};
    CHECK(bl_micro_batch_rows(&none) == 0, "lengths 0 and 1 select no row");
    int lens3[2] = {T, 5};
    BlMicroBatch some = {(int[2 * T]){0}, lens3, NULL, NULL, B, T};
    CHECK(bl_micro_batch_rows(&some) == (T - 1) + 4, "rows of lengths %d and 5: %ld", T,
          bl_micro_batch_rows(&some));
    bl_free_trainer(&whole);
    bl_free_trainer(&split);
    bl_free_student(&s_whole);
    bl_free_student(&s_split);
    tiny_free(m);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_step_rows: a step's losses and gradients are the whole batch's row means, "
           "however it is split (within %g)\n", TOL);
    return 0;
}
