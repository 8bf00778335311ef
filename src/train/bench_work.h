/* bench_work.h - the benchmark step's fixed work and its timing loop, one
 * definition for bl_bench_step (step.c, the CPU trainer) and
 * bl_device_bench_step (device_trainer_bench.c) so that both trainers time
 * the same thing: λ = 1, 8-bit activations, one LoRA adapter r=16 α=32 on
 * every BitLinear, CE + KL(τ=2) + hidden cosine, AdamW(1e-4, 0.9, 0.95,
 * 1e-8, 0.01), clip 1, full-length batches of pseudo-random tokens from one
 * fixed stream. */
#ifndef BL_BENCH_WORK_H
#define BL_BENCH_WORK_H

#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "train/step.h"
#include "train/student.h"

#define BL_BENCH_MAX_STEPS 1000

typedef struct BlBenchWork {
    BlStudent st;       /* the student with its adapter */
    BlLossConfig loss;
    BlOptConfig opt;
    int B, T;
    int *tokens;        /* [B·T] the batch of the step about to run */
    int *lens;          /* [B] all T */
    uint64_t rng;       /* the token stream */
    int vocab_size;
    int warmup, steps;  /* untimed, then timed steps */
    /* bl_bench_work_run's results */
    BlStepResult last;  /* the last step's */
    double median_s, min_s; /* over the timed steps */
} BlBenchWork;

/* The student of m with its adapter, the loss and optimizer settings, and a
 * B x T batch; refuses a step count outside 1..BL_BENCH_MAX_STEPS or a
 * negative warm-up. */
int bl_bench_work_build(BlBenchWork *w, const BlModel *m, int B, int T, int warmup, int steps,
                        BlError *err);
void bl_bench_work_free(BlBenchWork *w);

/* One training step of a trainer on w->tokens / w->lens. */
typedef int (*BlBenchStepFn)(void *trainer, const BlBenchWork *w, BlStepResult *res,
                             BlError *err);

/* Runs warmup + steps steps of trainer, each on the stream's next batch,
 * timing the last `steps`. */
int bl_bench_work_run(BlBenchWork *w, BlBenchStepFn step, void *trainer, BlError *err);

#endif
