/* device_trainer_bench.c - the device trainer's FLOP count and its step
 * benchmark (`bitlab bench step --device ...`), with bl_bench_step's
 * settings so the two trainers time the same work. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/device_trainer.h"

double bl_device_trainer_flops(const BlDeviceTrainer *tr, int B, int T) {
    const BlConfig *c = &tr->m->cfg;
    double M = (double)B * T, f = 0.0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlDevLinear *L = bl_dev_linear(tr, l, k);
            if (!L->out) continue;
            double oi = (double)L->out * L->in;
            f += 3.0 * 2.0 * M * oi;                   /* teacher, student, dx = dy·Weff */
            f += 2.0 * 2.0 * oi * L->rank;             /* W + B_cat·A_cat, forward and backward */
            f += 2.0 * M * L->r * (2.0 * L->in + 2.0 * L->out); /* the four LoRA gradient GEMMs */
            if (L->dense) f += 2.0 * M * oi;           /* ddense = dyᵀ·x */
        }
    f += 3.0 * 2.0 * M * c->dim * c->vocab_size;       /* teacher and student heads, dxf */
    /* causal attention: QKᵀ and PV over T(T+1)/2 pairs per head; teacher and
     * student forward, the backward twice a forward */
    double att = 2.0 * 2.0 * B * c->n_heads * c->head_dim * (T * (T + 1.0) / 2.0) * c->n_layers;
    return f + 4.0 * att;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bl_device_bench_step(const BlModel *m, const BlBackend *be, int B, int T, int warmup,
                         int steps, const BlDeviceTrainerOptions *o, BlDeviceStepBench *out,
                         BlError *err) {
    if (steps <= 0 || steps > 1000 || warmup < 0)
        return bl_fail(err, "bench step: %d steps (1..1000), %d warm-up", steps, warmup);
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8};
    BlLossConfig lc = {.w_ce = 1.0f, .w_kl = 1.0f, .w_cos = 1.0f, .tau = 2.0f, .topk = 1};
    BlOptConfig oc = {.adamw = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                .weight_decay = 0.01f},
                      .max_grad_norm = 1.0f};
    BlStudent st;
    BlDeviceTrainer tr;
    BlMemStats mem0;
    be->mem_stats(&mem0, true); /* the peak from here on */
    if (bl_build_student(&st, m, &sc, err)) return -1;
    if (bl_student_add_adapter(&st, 16, 32.0f, 1, err) ||
        bl_device_trainer_build(&tr, be, &st, B, T, &lc, &oc, o, err)) {
        bl_free_student(&st);
        return -1;
    }
    size_t M = (size_t)B * T;
    int *tokens = bl_malloc(M * sizeof(int), err), *lens = bl_malloc((size_t)B * sizeof(int), err);
    int rc = tokens && lens ? 0 : -1;
    for (int b = 0; rc == 0 && b < B; b++) lens[b] = T;
    double times[1000];
    uint64_t r = 0x9e3779b97f4a7c15ull; /* bl_bench_step's token stream */
    BlStepResult res;
    for (int it = 0; rc == 0 && it < warmup + steps; it++) {
        for (size_t i = 0; i < M; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            tokens[i] = (int)((r >> 33) % (uint64_t)m->cfg.vocab_size);
        }
        double t0 = now_s();
        rc = bl_device_distill_step(&tr, tokens, lens, NULL, 1, B, T, &res, err);
        if (it >= warmup) times[it - warmup] = now_s() - t0;
    }
    if (rc == 0) {
        qsort(times, steps, sizeof(double), cmp_double);
        *out = (BlDeviceStepBench){.B = B, .T = T, .steps = steps,
                                   .step_s_median = times[steps / 2], .step_s_min = times[0],
                                   .tokens_per_s = M / times[steps / 2],
                                   .flops_per_step = bl_device_trainer_flops(&tr, B, T),
                                   .last_total = res.total,
                                   .weight_bytes = tr.weight_bytes};
        be->mem_stats(&out->mem, false);
    }
    free(tokens);
    free(lens);
    bl_device_trainer_free(&tr);
    bl_free_student(&st);
    return rc;
}
