/* test_step_guard.c - the non-finite guard covers the update itself: a step
 * whose AdamW update would make any trainable value or moment NaN/±Inf (here
 * an LR of 1e38, which the Lua API refuses but C callers could pass) is not
 * applied: weights, AdamW moments and step counts stay bit for bit as they
 * were, the step reports skipped and counts it, and the next sane step
 * trains normally. Checked on the trainer (train/trainer.h: the guard is
 * the backend's adamw_check dry run, nothing is backed up) over the CPU
 * backend, and on the reference step (tests/c/ref/ref_step.c). The LR is a
 * step parameter (BlStepParams), so the insane step and the sane ones
 * differ only in what they pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "tiny_model.h"
#include "ref_step.h"
#include "train/trainer.h"

enum { B = 2, T = 12 };

/* All trainable values and moments of the host student, concatenated. */
static float *snapshot(const BlStudent *st, size_t *n) {
    size_t tot = 0;
    for (int i = 0; i < st->n_params; i++) tot += 3 * st->params[i].n;
    float *x = malloc(sizeof(float) * (tot ? tot : 1)), *o = x;
    for (int i = 0; i < st->n_params; i++) {
        size_t k = st->params[i].n;
        memcpy(o, st->params[i].p, sizeof(float) * k);
        memcpy(o + k, st->opt[i].m, sizeof(float) * k);
        memcpy(o + 2 * k, st->opt[i].v, sizeof(float) * k);
        o += 3 * k;
    }
    *n = tot;
    return x;
}

static bool all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

static void ref_trainer(const BlModel *m, const int *tokens, const int *lens) {
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8};
    BlRefLossConfig lc = {.w_ce = 1.0f, .w_kl = 1.0f, .tau = 1.0f, .topk = 1};
    BlOptConfig oc = {.adamw = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f},
                      .max_grad_norm = 1.0f};
    BlStudent st;
    BlRefTrainer tr;
    BlError err;
    CHECK(bl_build_student(&st, m, &sc, &err) == 0 && bl_student_add_adapter(&st, 4, 8.0f, 7, &err) == 0 &&
          bl_ref_build_trainer(&tr, &st, B, T, &lc, &oc, &err) == 0, "%s", err.msg);
    BlStepResult r;
    /* one sane step first: B != 0, moments non-zero */
    CHECK(bl_ref_distill_step(&tr, tokens, lens, NULL, 1, B, T, &r, &err) == 0 && !r.skipped, "step 1");
    size_t n, n2;
    float *before = snapshot(&st, &n);
    long t_before = st.opt[0].t;
    tr.opt.adamw.lr = 1e38f; /* lr / (1 - β1) overflows: the update is ±Inf */
    CHECK(bl_ref_distill_step(&tr, tokens, lens, NULL, 1, B, T, &r, &err) == 0, "%s", err.msg);
    CHECK(r.skipped, "reference: an update to non-finite weights was not reported skipped");
    CHECK(isfinite(r.grad_norm), "reference: the gradients themselves were finite");
    CHECK(tr.skipped == 1 && tr.steps == 2, "reference: counters %ld skipped of %ld", tr.skipped, tr.steps);
    float *after = snapshot(&st, &n2);
    CHECK(n == n2 && memcmp(before, after, sizeof(float) * n) == 0,
          "reference: weights or moments changed by a skipped update");
    CHECK(all_finite(after, n2), "reference: non-finite weights after the guarded step");
    CHECK(st.opt[0].t == t_before, "reference: the AdamW step count moved (%ld -> %ld)", t_before, st.opt[0].t);
    tr.opt.adamw.lr = 1e-2f;
    CHECK(bl_ref_distill_step(&tr, tokens, lens, NULL, 1, B, T, &r, &err) == 0 && !r.skipped,
          "reference: a sane step after the skipped one");
    free(after);
    after = snapshot(&st, &n2);
    CHECK(memcmp(before, after, sizeof(float) * n) != 0 && all_finite(after, n2), "reference: the sane step trained");
    free(before);
    free(after);
    bl_ref_free_trainer(&tr);
    bl_free_student(&st);
}

static void trainer(const BlModel *m, const int *tokens, const int *lens) {
    const BlBackend *be = bl_backend_cpu();
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8};
    BlLossConfig lc = {.w_ce = 1.0f, .w_kl = 1.0f, .tau = 1.0f};
    BlOptConfig oc = {.adamw = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f},
                      .max_grad_norm = 1.0f};
    BlTrainerShape sh = {.batch = B, .seq = T, .teacher_cache = true};
    BlStudent st;
    BlTrainer tr;
    BlError err;
    CHECK(bl_build_student(&st, m, &sc, &err) == 0 && bl_student_add_adapter(&st, 4, 8.0f, 7, &err) == 0 &&
          bl_build_trainer(&tr, be, &st, &sh, &err) == 0, "%s", err.msg);
    BlStepParams sane = bl_step_params(&st, &lc, &oc), insane = sane;
    insane.opt.adamw.lr = 1e38f; /* lr / (1 - β1) overflows: the update is ±Inf */
    BlStepResult r;
    CHECK(bl_trainer_step(&tr, &(BlMicroBatch){tokens, lens, NULL, NULL, B, T},
                          1, &sane, &r, &err) == 0 && !r.skipped,
          "trainer step 1: %s", err.msg);
    CHECK(bl_trainer_download(&tr, &err) == 0, "%s", err.msg);
    size_t n, n2;
    float *before = snapshot(&st, &n);
    long t_before = st.opt[0].t;
    CHECK(bl_trainer_step(&tr, &(BlMicroBatch){tokens, lens, NULL, NULL, B, T},
                          1, &insane, &r, &err) == 0, "%s", err.msg);
    CHECK(r.skipped, "trainer: an update to non-finite weights was not reported skipped");
    CHECK(isfinite(r.grad_norm), "trainer: the gradients themselves were finite");
    CHECK(tr.skipped == 1 && tr.steps == 2, "trainer: counters %ld skipped of %ld", tr.skipped, tr.steps);
    CHECK(bl_trainer_download(&tr, &err) == 0, "%s", err.msg);
    float *after = snapshot(&st, &n2);
    CHECK(n == n2 && memcmp(before, after, sizeof(float) * n) == 0,
          "trainer: weights or moments changed by a skipped update");
    CHECK(all_finite(after, n2), "trainer: non-finite weights after the guarded step");
    CHECK(st.opt[0].t == t_before, "trainer: the AdamW step count moved (%ld -> %ld)", t_before, st.opt[0].t);
    CHECK(bl_trainer_step(&tr, &(BlMicroBatch){tokens, lens, NULL, NULL, B, T},
                          1, &sane, &r, &err) == 0 && !r.skipped,
          "trainer: a sane step after the skipped one");
    CHECK(bl_trainer_download(&tr, &err) == 0, "%s", err.msg);
    free(after);
    after = snapshot(&st, &n2);
    CHECK(memcmp(before, after, sizeof(float) * n) != 0 && all_finite(after, n2), "trainer: the sane step trained");
    free(before);
    free(after);
    bl_free_trainer(&tr);
    bl_free_student(&st);
}

int main(void) {
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 32, 2, 4, 48, 41, 5);
    int tokens[B * T], lens[B] = {T, T - 3};
    for (int i = 0; i < B * T; i++) tokens[i] = (int)((i * 2654435761u) >> 9) % 41;
    ref_trainer(m, tokens, lens);
    trainer(m, tokens, lens);
    tiny_free(m);
    if (failures) {
        fprintf(stderr, "test_step_guard: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_step_guard: ok\n");
    return 0;
}
