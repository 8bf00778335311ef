/* trainer_step.c - a step over several micro-batches, in one process or
 * shared by several (see trainer.h: bl_trainer_step, bl_trainer_step_reduce).
 *
 * Why a separate accumulator: the backward adds a micro-batch's gradient
 * into the arena inside its GEMMs (beta = 1), which rounds fl(G + alpha·g)
 * once; a process that formed only its own micro-batch rounds alpha·g
 * alone, and a sum over processes then adds rounded terms. Forming every
 * micro-batch's gradient in a zeroed arena and adding the terms in order
 * makes one process with micro-batches m0, m1 and two processes with one
 * each compute the same ((0 + m0) + m1), bit for bit. */
#include <stdlib.h>
#include <string.h>

#include "train/trainer.h"

/* the scalars a shared step reduces, in BlStepReduce's order */
#define N_SCALARS 7

static void add_result(BlStepResult *acc, const BlStepResult *r) {
    acc->ce += r->ce;
    acc->kl += r->kl;
    acc->topk += r->topk;
    acc->cos += r->cos;
    acc->mag += r->mag;
    acc->rel += r->rel;
    acc->total += r->total;
    if (r->teacher > acc->teacher) acc->teacher = r->teacher;
}

size_t bl_trainer_grad_arena_bytes(size_t n_floats) {
    return sizeof(float) * (n_floats ? n_floats : 1); /* at least one float: alloc(0) is no buffer */
}

/* The accumulator (backend) and host copy for the arena as it is now (a
 * rotation may change its length); the host copy only for a reduction on
 * the host (a device sum reduces the arena where it is). */
static int ensure_buffers(BlTrainer *tr, bool acc, bool host, BlError *err) {
    size_t n = tr->ds.n_floats;
    if (acc && tr->acc_n != n) {
        if (tr->g_acc) tr->be->free(tr->g_acc);
        tr->acc_n = 0;
        if (!(tr->g_acc = tr->be->alloc(bl_trainer_grad_arena_bytes(n), err)))
            return bl_fail_prefix(err, "trainer: the step's gradient accumulator");
        tr->acc_n = n;
    }
    if (host && tr->host_n != n) {
        free(tr->g_host);
        tr->host_n = 0;
        if (!(tr->g_host = bl_malloc(bl_trainer_grad_arena_bytes(n), err)))
            return bl_fail_prefix(err, "trainer: the host copy of the gradients");
        tr->host_n = n;
    }
    return 0;
}

/* The arena's sum and the step's scalars summed over the processes: in
 * backend memory when the reduction offers it (the all-reduce is queued on
 * the device while the scalars go through the host), else through the host
 * copy. */
static int reduce(BlTrainer *tr, const BlStepReduce *red, BlStepResult *res, BlError *err) {
    const BlBackend *be = tr->be;
    size_t n = tr->ds.n_floats;
    double s[N_SCALARS] = {res->ce, res->kl, res->topk, res->cos, res->mag, res->rel, res->total};
    if (red->sum_device) {
        if (red->sum_device(red->ctx, tr->ds.g, n, err) ||
            red->reduce(red->ctx, NULL, 0, s, N_SCALARS, err))
            return -1;
    } else if (be->download(tr->g_host, tr->ds.g, sizeof(float) * n, err) || be->sync(err) ||
               red->reduce(red->ctx, tr->g_host, n, s, N_SCALARS, err) ||
               be->upload(tr->ds.g, tr->g_host, sizeof(float) * n, err)) {
        return -1;
    }
    res->ce = s[0], res->kl = s[1], res->topk = s[2], res->cos = s[3], res->mag = s[4],
    res->rel = s[5], res->total = s[6];
    return 0;
}

/* micro-batch i of batch's back-to-back arrays */
static BlMicroBatch micro_batch(const BlMicroBatch *batch, int i) {
    size_t off = (size_t)i * batch->B * batch->T;
    return (BlMicroBatch){.tokens = batch->tokens + off,
                          .lens = batch->lens + (size_t)i * batch->B,
                          .mask = batch->mask ? batch->mask + off : NULL,
                          .doc_start = batch->doc_start ? batch->doc_start + off : NULL,
                          .B = batch->B, .T = batch->T};
}

int bl_trainer_step_reduce(BlTrainer *tr, const BlMicroBatch *batch, int n_micro,
                           const BlStepReduce *red, const BlStepParams *p, BlStepResult *res,
                           BlError *err) {
    memset(res, 0, sizeof *res);
    if (n_micro <= 0) return bl_fail(err, "step: %d micro-batches", n_micro);
    long rows = 0;
    for (int i = 0; i < n_micro; i++) {
        BlMicroBatch mb = micro_batch(batch, i);
        rows += bl_micro_batch_rows(&mb);
    }
    if (red && red->rows_total < rows)
        return bl_fail(err, "step: %ld selected rows here, more than the %ld of the shared step",
                       rows, red->rows_total);
    if (red) rows = red->rows_total;
    const BlBackend *be = tr->be;
    BlDeviceStudent *ds = &tr->ds;
    bool sep = n_micro > 1; /* each micro-batch in the zeroed arena, then into g_acc */
    if (ensure_buffers(tr, sep, red && !red->sum_device, err)) return -1;
    for (int i = 0; i < n_micro; i++) {
        BlMicroBatch mb = micro_batch(batch, i);
        /* its share of the step's rows: the losses are means over them all */
        float w = rows > 0 ? (float)((double)bl_micro_batch_rows(&mb) / (double)rows) : 0.0f;
        /* this micro-batch's losses on their own, added to the step's in
         * order (the total of one is its own terms, not a difference of
         * running sums) */
        BlStepResult r;
        memset(&r, 0, sizeof r);
        if (sep && i > 0) be->zero(ds->g, sizeof(float) * ds->n_floats);
        if (bl_trainer_accumulate(tr, &mb, w, p, &r, err)) {
            bl_trainer_zero_grads(tr);
            return -1;
        }
        add_result(res, &r);
        if (sep) {
            if (i == 0) be->zero(tr->g_acc, sizeof(float) * ds->n_floats);
            be->add(tr->g_acc, ds->g, ds->n_floats);
        }
    }
    if (sep) { /* the sum back where the update reads it */
        be->zero(ds->g, sizeof(float) * ds->n_floats);
        be->add(ds->g, tr->g_acc, ds->n_floats);
    }
    if (red && reduce(tr, red, res, err)) {
        bl_trainer_zero_grads(tr);
        return bl_fail_prefix(err, "step: reducing the gradients over the processes");
    }
    return bl_trainer_update(tr, p, res, err);
}

int bl_trainer_step(BlTrainer *tr, const BlMicroBatch *batch, int n_micro, const BlStepParams *p,
                    BlStepResult *res, BlError *err) {
    return bl_trainer_step_reduce(tr, batch, n_micro, NULL, p, res, err);
}
