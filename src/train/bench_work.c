/* bench_work.c - the benchmark step's settings, batches and timing loop
 * (see bench_work.h). */
#include "train/bench_work.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int bl_bench_work_build(BlBenchWork *w, const BlModel *m, int B, int T, int warmup, int steps,
                        BlError *err) {
    memset(w, 0, sizeof *w);
    if (steps <= 0 || steps > BL_BENCH_MAX_STEPS || warmup < 0)
        return bl_fail(err, "bench step: %d steps (1..%d), %d warm-up", steps,
                       BL_BENCH_MAX_STEPS, warmup);
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8};
    w->loss = (BlLossConfig){.w_ce = 1.0f, .w_kl = 1.0f, .w_cos = 1.0f, .tau = 2.0f, .topk = 1};
    w->opt = (BlOptConfig){.adamw = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                     .weight_decay = 0.01f},
                           .max_grad_norm = 1.0f};
    w->B = B;
    w->T = T;
    w->rng = 0x9e3779b97f4a7c15ull;
    w->vocab_size = m->cfg.vocab_size;
    w->warmup = warmup;
    w->steps = steps;
    if (bl_build_student(&w->st, m, &sc, err)) return -1;
    if (bl_student_add_adapter(&w->st, 16, 32.0f, 1, err) ||
        !(w->tokens = bl_malloc((size_t)B * T * sizeof(int), err)) ||
        !(w->lens = bl_malloc((size_t)B * sizeof(int), err))) {
        bl_bench_work_free(w);
        return -1;
    }
    for (int b = 0; b < B; b++) w->lens[b] = T;
    return 0;
}

void bl_bench_work_free(BlBenchWork *w) {
    bl_free_student(&w->st);
    free(w->tokens);
    free(w->lens);
    memset(w, 0, sizeof *w);
}

static void next_batch(BlBenchWork *w) {
    size_t M = (size_t)w->B * w->T;
    for (size_t i = 0; i < M; i++) {
        w->rng = w->rng * 6364136223846793005ull + 1442695040888963407ull;
        w->tokens[i] = (int)((w->rng >> 33) % (uint64_t)w->vocab_size);
    }
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

int bl_bench_work_run(BlBenchWork *w, BlBenchStepFn step, void *trainer, BlError *err) {
    double times[BL_BENCH_MAX_STEPS];
    for (int it = 0; it < w->warmup + w->steps; it++) {
        next_batch(w);
        double t0 = now_s();
        if (step(trainer, w, &w->last, err)) return -1;
        if (it >= w->warmup) times[it - w->warmup] = now_s() - t0;
    }
    qsort(times, w->steps, sizeof(double), cmp_double);
    w->median_s = times[w->steps / 2];
    w->min_s = times[0];
    return 0;
}
