/* trainer_bench.c - the trainer's FLOP count and its step benchmark
 * (`bitlab bench step`, bench/bench_step.py): λ = 1, 8-bit activations, one
 * LoRA adapter r=16 α=32 on every BitLinear, CE + KL(τ=2) + hidden cosine,
 * AdamW(1e-4, 0.9, 0.95, 1e-8, 0.01), clip 1, full-length batches of
 * pseudo-random tokens from one fixed stream (bench/bench_step_torch.py
 * times the same work in PyTorch). */
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define BENCH_MAX_STEPS 1000

double bl_trainer_flops(const BlTrainer *tr, int B, int T) {
    const BlConfig *c = &tr->m->cfg;
    double M = (double)B * T, f = 0.0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlDevLinear *L = bl_dev_linear(&tr->ds, l, k);
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

// ----------------------------------------------------------------------------
// the benchmark

/* the next full-length batch of the token stream */
static void next_batch(int *tokens, size_t M, int vocab_size, uint64_t *rng) {
    for (size_t i = 0; i < M; i++) {
        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = (int)((*rng >> 33) % (uint64_t)vocab_size);
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

/* warmup + steps steps on the stream, timing the last `steps` */
static int timed_steps(BlTrainer *tr, const BlStepParams *p, int warmup, int steps, int *tokens,
                       const int *lens, BlStepBench *out, BlError *err) {
    double times[BENCH_MAX_STEPS];
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    BlStepResult res;
    long faults = 0;
    for (int it = 0; it < warmup + steps; it++) {
        next_batch(tokens, (size_t)tr->B * tr->T, tr->m->cfg.vocab_size, &rng);
        struct rusage r0, r1;
        getrusage(RUSAGE_SELF, &r0);
        double t0 = now_s();
        BlMicroBatch mb = {.tokens = tokens, .lens = lens, .B = tr->B, .T = tr->T};
        if (bl_trainer_step(tr, &mb, 1, p, &res, err)) return -1;
        double t1 = now_s();
        getrusage(RUSAGE_SELF, &r1);
        if (it < warmup) continue;
        times[it - warmup] = t1 - t0;
        faults += r1.ru_minflt - r0.ru_minflt;
    }
    out->minor_faults = (double)faults / steps;
    qsort(times, steps, sizeof(double), cmp_double);
    out->step_s_median = times[steps / 2];
    out->step_s_min = times[0];
    out->last_total = res.total;
    return 0;
}

int bl_bench_step(const BlModel *m, const BlBackend *be, const BlTrainerShape *shape, int warmup,
                  int steps, BlStepBench *out, BlError *err) {
    int B = shape->batch, T = shape->seq;
    if (steps <= 0 || steps > BENCH_MAX_STEPS || warmup < 0)
        return bl_fail(err, "bench step: %d steps (1..%d), %d warm-up", steps, BENCH_MAX_STEPS,
                       warmup);
    if (B <= 0 || T <= 0) return bl_fail(err, "bench step: bad batch %d x %d", B, T);
    BlStudentConfig sc = {.lambda = 1.0f, .act_bits = 8};
    BlLossConfig loss = {.w_ce = 1.0f, .w_kl = 1.0f, .w_cos = 1.0f, .tau = 2.0f};
    BlOptConfig opt = {.adamw = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                 .weight_decay = 0.01f},
                       .max_grad_norm = 1.0f};
    BlTrainerShape sh = *shape;
    sh.hidden = true;
    BlStudent st;
    BlTrainer tr;
    if (bl_build_student(&st, m, &sc, err)) return -1;
    int *tokens = bl_malloc((size_t)B * T * sizeof(int), err);
    int *lens = bl_malloc((size_t)B * sizeof(int), err);
    int rc = -1;
    if (!tokens || !lens || bl_student_add_adapter(&st, 16, 32.0f, 1, err)) goto done;
    for (int b = 0; b < B; b++) lens[b] = T;
    /* the peak from here on: the student is host memory, the trainer's
     * buffers are the backend's */
    BlMemStats mem0;
    be->mem_stats(&mem0, true);
    if (bl_build_trainer(&tr, be, &st, &sh, err)) goto done;
    *out = (BlStepBench){.B = B, .T = T, .steps = steps};
    BlStepParams p = bl_step_params(&st, &loss, &opt);
    rc = timed_steps(&tr, &p, warmup, steps, tokens, lens, out, err);
    if (rc == 0) {
        out->tokens_per_s = (double)B * T / out->step_s_median;
        out->flops_per_step = bl_trainer_flops(&tr, B, T);
        out->weight_bytes = tr.ds.weight_bytes;
        bl_trainer_memory(&tr, &out->tmem);
        be->mem_stats(&out->mem, false);
    }
    bl_free_trainer(&tr);
done:
    free(tokens);
    free(lens);
    bl_free_student(&st);
    return rc;
}
