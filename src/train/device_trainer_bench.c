/* device_trainer_bench.c - the device trainer's FLOP count and its step
 * benchmark (`bitlab bench step --device ...`) on bench_work.h's work, as
 * bl_bench_step, so that the two trainers time the same thing. */
#include "train/device_trainer.h"

#include "train/bench_work.h"

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

static int bench_one_step(void *trainer, const BlBenchWork *w, BlStepResult *res, BlError *err) {
    return bl_device_distill_step(trainer, w->tokens, w->lens, NULL, 1, w->B, w->T, res, err);
}

int bl_device_bench_step(const BlModel *m, const BlBackend *be, int B, int T, int warmup,
                         int steps, const BlDeviceTrainerOptions *o, BlDeviceStepBench *out,
                         BlError *err) {
    BlBenchWork w;
    BlDeviceTrainer tr;
    if (bl_bench_work_build(&w, m, B, T, warmup, steps, err)) return -1;
    /* the peak from here on: the work's student is host memory, the
     * trainer's buffers are the backend's */
    BlMemStats mem0;
    be->mem_stats(&mem0, true);
    if (bl_device_trainer_build(&tr, be, &w.st, B, T, &w.loss, &w.opt, o, err)) {
        bl_bench_work_free(&w);
        return -1;
    }
    int rc = bl_bench_work_run(&w, bench_one_step, &tr, err);
    if (rc == 0) {
        *out = (BlDeviceStepBench){.B = B, .T = T, .steps = steps, .step_s_median = w.median_s,
                                   .step_s_min = w.min_s,
                                   .tokens_per_s = (double)B * T / w.median_s,
                                   .flops_per_step = bl_device_trainer_flops(&tr, B, T),
                                   .last_total = w.last.total,
                                   .weight_bytes = tr.weight_bytes};
        be->mem_stats(&out->mem, false);
    }
    bl_device_trainer_free(&tr);
    bl_bench_work_free(&w);
    return rc;
}
