/* test_train_converges.c - the whole loop learns: a tiny random teacher built
 * in C, its ternary student (λ = 1, 8-bit activations, LoRA r = 8 on every
 * BitLinear) trained by KL for 200 AdamW steps on one batch must bring the
 * KL below 5% of its starting value. At step 100 the adapter rotates
 * (freeze + fresh B = 0 adapter + fresh optimizer state): the loss recomputed
 * right after the rotation must equal the one right before it, bit for bit,
 * since a zero B adds exactly nothing to W + ΔW. Also checks that the step
 * is deterministic (a second run from the same seed gives the same losses).
 * The trainer (train/trainer.h) on the CPU backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tiny_model.h"
#include "train/trainer.h"

enum { B = 2, T = 16, STEPS = 200, ROTATE_AT = 100 };

/* The KL of the current student on the batch, without an update. */
static double current_kl(BlTrainer *tr, const BlStepParams *p, const int *tokens,
                         const int *lens) {
    BlError err;
    BlStepResult acc = {0};
    if (bl_trainer_accumulate(tr, &(BlMicroBatch){tokens, lens, NULL, NULL, B, T},
                              1.0f, p, &acc, &err))
        CHECK(0, "accumulate: %s", err.msg);
    /* no update: the accumulated gradients are dropped */
    bl_trainer_zero_grads(tr);
    return acc.kl;
}

/* Trains; kl[i] = the KL at step i (before its update). Returns 0 on success. */
static int train(const BlModel *m, const int *tokens, const int *lens, double *kl,
                 double *before_rot, double *after_rot) {
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8};
    BlLossConfig lc = {.w_kl = 1.0f, .tau = 1.0f};
    BlOptConfig oc = {.adamw = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f},
                      .max_grad_norm = 1.0f};
    BlStudent st;
    BlTrainer tr;
    BlError err;
    if (bl_build_student(&st, m, &sc, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    BlTrainerShape sh = {.batch = B, .seq = T, .teacher_cache = true};
    if (bl_student_add_adapter(&st, 8, 16.0f, 42, &err) ||
        bl_build_trainer(&tr, bl_backend_cpu(), &st, &sh, &err)) {
        CHECK(0, "%s", err.msg);
        bl_free_student(&st);
        return -1;
    }
    BlStepParams p = bl_step_params(&st, &lc, &oc);
    int rc = 0;
    for (int i = 0; i < STEPS && rc == 0; i++) {
        if (i == ROTATE_AT) {
            *before_rot = current_kl(&tr, &p, tokens, lens);
            /* the host student is the source of truth: bring it up to date,
             * rotate it, and let the trainer re-read it */
            rc = bl_trainer_download(&tr, &err) || bl_student_rotate(&st, 8, 16.0f, 1000 + i, &err) ||
                 bl_trainer_upload(&tr, &err);
            if (rc == 0) *after_rot = current_kl(&tr, &p, tokens, lens);
        }
        BlStepResult res = {0};
        if (rc == 0) rc = bl_trainer_step(&tr, &(BlMicroBatch){tokens, lens, NULL, NULL, B, T},
                                          1, &p, &res, &err);
        CHECK(rc == 0, "step %d: %s", i, err.msg);
        CHECK(!res.skipped, "step %d skipped", i);
        kl[i] = res.kl;
    }
    bl_free_trainer(&tr);
    bl_free_student(&st);
    return rc;
}

int main(void) {
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 48, 2, 4, 96, 61, 99);
    int tokens[B * T], lens[B] = {T, T - 5};
    for (int i = 0; i < B * T; i++) tokens[i] = (int)((i * 2654435761u) >> 7) % 61;
    double kl[STEPS], kl2[STEPS], before = NAN, after = NAN, b2, a2;
    if (train(m, tokens, lens, kl, &before, &after) == 0 &&
        train(m, tokens, lens, kl2, &b2, &a2) == 0) {
        double last = kl[STEPS - 1];
        printf("  KL: step 0 %.5f, step %d %.5f, step %d %.6f (%.2f%% of the start)\n", kl[0],
               ROTATE_AT, kl[ROTATE_AT], STEPS - 1, last, 100.0 * last / kl[0]);
        printf("  rotation at step %d: KL before %.9g, after %.9g\n", ROTATE_AT, before, after);
        CHECK(kl[0] > 0.0 && last < 0.05 * kl[0], "KL fell only from %g to %g", kl[0], last);
        CHECK(before == after, "rotation changed the loss: %.12g -> %.12g", before, after);
        CHECK(memcmp(kl, kl2, sizeof kl) == 0, "two runs from the same seed differ");
    }
    tiny_free(m);
    if (failures) {
        fprintf(stderr, "test_train_converges: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_train_converges: ok\n");
    return 0;
}
