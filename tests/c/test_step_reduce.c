/* test_step_reduce.c - a step shared by two processes equals one process's
 * step over both micro-batches, bit for bit (train/trainer.h:
 * bl_trainer_step_reduce), without MPI: two "ranks" are two trainers in
 * this process, each on its own copy of the student, and the reduction is
 * played by hand in rank order, as dist/comm.c's fixed-order sum does it:
 * rank 1's reduce callback hands its gradient arena and loss scalars over,
 * rank 0's adds them to its own (x0 + x1). Against them, one trainer runs
 * bl_trainer_step on the two micro-batches back to back (the micro-batch
 * accumulator path). Over several steps (rank 1's student re-synced from
 * rank 0's after each, as the real rank 1 would hold it after the same
 * update): losses, gradient norms (global, per block, per kind) and every
 * trainable value, AdamW moment and step count agree exactly. Random
 * tokens and lengths, CE + KL + hidden cosine + magnitude losses; LoRA,
 * dense ΔW, SubLN and post-attention norms trained. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "check.h"
#include "tiny_model.h"
#include "train/trainer.h"

/* T·B = 512 rows per micro-batch: more than one K block of the weight
 * gradients' GEMMs (where accumulating into the arena would round
 * differently), SubLN, post-attention norms and dense ΔW trainable too (their
 * gradients are row sums) */
enum { B = 4, T = 128, STEPS = 3, VOCAB = 41 };

typedef struct {
    float *g;
    double s[16];
    size_t n;
    int ns;
} Handover;

/* rank 1: hands its local sums over (its own update is discarded: it is re-synced) */
static int give(void *ctx, float *g, size_t n, double *s, int ns, BlError *err) {
    (void)err;
    Handover *h = ctx;
    h->g = realloc(h->g, sizeof(float) * (n ? n : 1));
    memcpy(h->g, g, sizeof(float) * n);
    memcpy(h->s, s, sizeof(double) * (size_t)ns);
    h->n = n;
    h->ns = ns;
    return 0;
}

/* rank 0: its sums + rank 1's, in rank order */
static int take(void *ctx, float *g, size_t n, double *s, int ns, BlError *err) {
    Handover *h = ctx;
    if (h->n != n || h->ns != ns) return bl_fail(err, "the ranks' arenas differ (%zu vs %zu)", h->n, n);
    for (size_t i = 0; i < n; i++) g[i] += h->g[i];
    for (int i = 0; i < ns; i++) s[i] += h->s[i];
    return 0;
}

/* dst's trainable values, moments and step counts := src's (host students) */
static void copy_student(BlStudent *dst, const BlStudent *src) {
    CHECK(dst->n_params == src->n_params, "students differ in tensors");
    for (int i = 0; i < src->n_params && i < dst->n_params; i++) {
        size_t k = src->params[i].n;
        memcpy(dst->params[i].p, src->params[i].p, sizeof(float) * k);
        memcpy(dst->opt[i].m, src->opt[i].m, sizeof(float) * k);
        memcpy(dst->opt[i].v, src->opt[i].v, sizeof(float) * k);
        dst->opt[i].t = src->opt[i].t;
    }
}

static bool same_student(const BlStudent *a, const BlStudent *b) {
    if (a->n_params != b->n_params) return false;
    for (int i = 0; i < a->n_params; i++) {
        size_t k = a->params[i].n;
        if (memcmp(a->params[i].p, b->params[i].p, sizeof(float) * k) ||
            memcmp(a->opt[i].m, b->opt[i].m, sizeof(float) * k) ||
            memcmp(a->opt[i].v, b->opt[i].v, sizeof(float) * k) || a->opt[i].t != b->opt[i].t)
            return false;
    }
    return true;
}

static bool same_result(const BlStepResult *a, const BlStepResult *b, int n_layers) {
    bool ok = a->ce == b->ce && a->kl == b->kl && a->topk == b->topk && a->cos == b->cos &&
              a->mag == b->mag && a->rel == b->rel && a->total == b->total &&
              a->grad_norm == b->grad_norm && a->skipped == b->skipped;
    for (int k = 0; k < BL_GRAD_KINDS; k++) ok = ok && a->kind_grad_norm[k] == b->kind_grad_norm[k];
    for (int l = 0; l < n_layers; l++) ok = ok && a->block_grad_norm[l] == b->block_grad_norm[l];
    return ok;
}

int main(void) {
    const BlBackend *be = bl_backend_cpu();
    BlModel *m = tiny_model(BL_ARCH_LLAMA, 32, 2, 4, 48, VOCAB, 11);
    BlStudentConfig sc = {.lambda = 0.7f, .act_bits = 8, .subln = true, .post_attn_norm = true,
                          .dense = true};
    BlLossConfig lc = {.w_ce = 1.0f, .w_kl = 0.5f, .w_cos = 0.3f, .w_mag = 0.1f, .tau = 2.0f};
    BlOptConfig oc = {.adamw = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                .weight_decay = 0.01f},
                      .max_grad_norm = 1.0f};
    BlTrainerShape sh = {.batch = B, .seq = T, .hidden = true, .teacher_cache = true};
    BlStudent one, r0, r1;
    BlTrainer t_one, t_r0, t_r1;
    BlError err = {{0}};
    BlStudent *sts[3] = {&one, &r0, &r1};
    BlTrainer *trs[3] = {&t_one, &t_r0, &t_r1};
    for (int i = 0; i < 3; i++)
        CHECK(bl_build_student(sts[i], m, &sc, &err) == 0 &&
                  bl_student_add_adapter(sts[i], 4, 8.0f, 7, &err) == 0 &&
                  bl_build_trainer(trs[i], be, sts[i], &sh, &err) == 0,
              "build %d: %s", i, err.msg);
    if (failures) return 1;
    BlStepParams p = bl_step_params(&one, &lc, &oc);
    Handover h = {0};
    BlStepReduce red1 = {.reduce = give, .ctx = &h}, red0 = {.reduce = take, .ctx = &h};
    tiny_rng = 99;
    for (int step = 1; step <= STEPS; step++) {
        int tokens[2 * B * T], lens[2 * B];
        for (int i = 0; i < 2 * B * T; i++) tokens[i] = (int)((tiny_frand() + 1.0f) * 0.5f * VOCAB) % VOCAB;
        for (int b = 0; b < 2 * B; b++) lens[b] = T / 2 + (int)((tiny_frand() + 1.0f) * 0.5f * (T / 2)) % (T / 2 + 1);
        BlStepResult ra, rb, rc;
        /* the global batch's rows, as every rank counts them */
        red0.rows_total = red1.rows_total =
            bl_micro_batch_rows(&(BlMicroBatch){tokens, lens, NULL, NULL, 2 * B, T});
        CHECK(bl_trainer_step(&t_one, &(BlMicroBatch){tokens, lens, NULL, NULL, B, T}, 2, &p, &ra,
                              &err) == 0, "one process, step %d: %s", step, err.msg);
        /* rank 1 first: its reduce hands over; then rank 0 adds it to its own */
        CHECK(bl_trainer_step_reduce(&t_r1, &(BlMicroBatch){tokens + B * T, lens + B, NULL, NULL, B, T},
                                     1, &red1, &p, &rc, &err) == 0, "rank 1, step %d: %s", step, err.msg);
        CHECK(bl_trainer_step_reduce(&t_r0, &(BlMicroBatch){tokens, lens, NULL, NULL, B, T}, 1, &red0,
                                     &p, &rb, &err) == 0, "rank 0, step %d: %s", step, err.msg);
        CHECK(!ra.skipped && ra.grad_norm > 0 && ra.total > 0, "step %d trained (|g| %g)", step, ra.grad_norm);
        CHECK(same_result(&ra, &rb, m->cfg.n_layers),
              "step %d: the shared step's results differ from one process's: total %.17g vs %.17g, "
              "|g| %.17g vs %.17g", step, ra.total, rb.total, ra.grad_norm, rb.grad_norm);
        CHECK(bl_trainer_download(&t_one, &err) == 0 && bl_trainer_download(&t_r0, &err) == 0, "%s", err.msg);
        CHECK(same_student(&one, &r0), "step %d: the students differ after the update", step);
        /* rank 1 would have taken rank 0's update: its student follows */
        copy_student(&r1, &r0);
        CHECK(bl_trainer_upload(&t_r1, &err) == 0, "%s", err.msg);
    }
    BlTrainerMemory mem;
    bl_trainer_memory(&t_one, &mem);
    CHECK(mem.grad_accum == sizeof(float) * t_one.ds.n_floats,
          "two micro-batches report their accumulator: %zu bytes, want %zu", mem.grad_accum,
          sizeof(float) * t_one.ds.n_floats);
    bl_trainer_memory(&t_r0, &mem);
    CHECK(mem.grad_accum == sizeof(float) * t_r0.ds.n_floats,
          "a shared step of one micro-batch reports its host copy only: %zu bytes", mem.grad_accum);
    free(h.g);
    for (int i = 0; i < 3; i++) {
        bl_free_trainer(trs[i]);
        bl_free_student(sts[i]);
    }
    tiny_free(m);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_step_reduce: a shared step equals one process's, bit for bit, over %d steps\n", STEPS);
    return 0;
}
