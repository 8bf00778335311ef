/* device_trainer.c - the device trainer's step (see device_trainer.h): its
 * buffers, the teacher's outputs (computed through the backend, or still
 * there from the previous micro-batch), the token losses over chunks of
 * sequences, the hidden losses during the backward, and the update (norms,
 * non-finite skip, clip, AdamW). The twin of train/step.c. */
#include "train/device_trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/micro_loss.h"
#include "ops/quant.h"

#define MAX2(a, b) ((a) > (b) ? (a) : (b))

// ----------------------------------------------------------------------------
// buffers

static int alloc_acts(BlDeviceTrainer *tr, BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    BlDevActs *a = &tr->a;
    size_t M = (size_t)tr->B * tr->T, L = (size_t)c->n_layers, D = (size_t)c->dim;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size, F = sizeof(float);
    size_t maxin = MAX2(MAX2(D, qd), H), maxout = MAX2(D, qd + 2 * kvd), wmax = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &tr->m->layers[l].lin[k];
            if (w->w) wmax = MAX2(wmax, (size_t)w->out * w->in);
        }
    size_t CT = (size_t)tr->chunk * tr->T, K = (size_t)tr->K;
    bool sub = tr->student->cfg.subln, pan = tr->student->cfg.post_attn_norm;
    struct { void **p; size_t bytes; int saved; } bufs[] = {
        {(void **)&a->targets, M * sizeof(int), 0},
        {(void **)&a->tok_mask, M, 0},
        {(void **)&a->hid_mask, M, 0},
        {(void **)&a->xs, (L + 1) * M * D * F, 1},
        {(void **)&a->rstd1, L * M * F, 1},
        {(void **)&a->rstd2, L * M * F, 1},
        {(void **)&a->q, L * M * qd * F, 1},
        {(void **)&a->k, L * M * kvd * F, 1},
        {(void **)&a->v, L * M * kvd * F, 1},
        {(void **)&a->att, L * M * c->n_heads * tr->T * F, 1},
        {(void **)&a->ao, L * M * qd * F, 1},
        {(void **)&a->xmid, L * M * D * F, 1},
        {(void **)&a->gu, L * M * 2 * H * F, 1},
        {(void **)&a->opre, pan ? L * M * D * F : 0, 1},
        {(void **)&a->rstd_pa, pan ? L * M * F : 0, 1},
        {(void **)&a->rstd_sub, sub ? L * BL_LIN_KINDS * M * F : 0, 1},
        {(void **)&a->xf, M * D * F, 1},
        {(void **)&a->rstd_f, M * F, 1},
        {(void **)&a->xn, M * D * F, 0},
        {(void **)&a->xq, M * maxin * F, 0},
        {(void **)&a->y, M * maxout * F, 0},
        {(void **)&a->act, M * H * F, 0},
        {(void **)&a->weff, wmax * F, 0},
        {(void **)&a->dx, M * D * F, 0},
        {(void **)&a->dx2, M * maxin * F, 0},
        {(void **)&a->dxn, M * D * F, 0},
        {(void **)&a->dxf, M * D * F, 0},
        {(void **)&a->dgu, M * 2 * H * F, 0},
        {(void **)&a->dact, M * H * F, 0},
        {(void **)&a->dq, M * qd * F, 0},
        {(void **)&a->dk, M * kvd * F, 0},
        {(void **)&a->dv, M * kvd * F, 0},
        {(void **)&a->dao, M * qd * F, 0},
        {(void **)&a->slogits, CT * V * F, 0},
        {(void **)&a->dlogits, CT * V * F, 0},
        {(void **)&a->topk_ids, CT * K * sizeof(int), 0},
        {(void **)&a->topk_logp, CT * K * F, 0},
        {(void **)&a->t_hidden, L * M * D * F, 0},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (!bufs[i].bytes) continue;
        if (!(*bufs[i].p = be->alloc(bufs[i].bytes, err)))
            return bl_fail_prefix(err, "device trainer: activations for %d x %d tokens", tr->B,
                                  tr->T);
        *(bufs[i].saved ? &a->bytes_saved : &a->bytes_scratch) += bufs[i].bytes;
    }
    return 0;
}

/* LoRA backward scratch: M·r of the largest newest adapter (regrown by upload) */
static int alloc_lscratch(BlDeviceTrainer *tr, BlError *err) {
    if (tr->a.lscratch) tr->be->free(tr->a.lscratch);
    size_t n = (size_t)tr->B * tr->T * (size_t)MAX2(tr->rmax, 1);
    tr->a.lscratch = tr->be->alloc(sizeof(float) * n, err);
    return tr->a.lscratch ? 0 : -1;
}

static void free_acts(BlDeviceTrainer *tr) {
    BlDevActs *a = &tr->a;
    void *bufs[] = {a->targets, a->tok_mask, a->hid_mask, a->xs,   a->rstd1,    a->rstd2,
                    a->q,       a->k,        a->v,        a->att,  a->ao,       a->xmid,
                    a->gu,      a->opre,     a->rstd_pa,  a->rstd_sub, a->xf,   a->rstd_f,
                    a->xn,      a->xq,       a->y,        a->act,  a->weff,     a->lscratch,
                    a->dx,      a->dx2,      a->dxn,      a->dxf,  a->dgu,      a->dact,
                    a->dq,      a->dk,       a->dv,       a->dao,  a->slogits,  a->dlogits,
                    a->topk_ids, a->topk_logp, a->t_hidden};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) tr->be->free(bufs[i]);
    memset(a, 0, sizeof *a);
}

// ----------------------------------------------------------------------------
// lifetime

int bl_device_trainer_build(BlDeviceTrainer *tr, const BlBackend *be, BlStudent *st, int B, int T,
                            const BlLossConfig *loss, const BlOptConfig *opt,
                            const BlDeviceTrainerOptions *o, BlError *err) {
    memset(tr, 0, sizeof *tr);
    const BlConfig *c = &st->model->cfg;
    if (B <= 0 || T <= 0) return bl_fail(err, "device trainer: bad batch %d x %d", B, T);
    if (loss->w_topk != 0.0f &&
        (loss->topk < 1 || loss->topk > BL_TOPK_MAX || loss->topk > c->vocab_size))
        return bl_fail(err, "device trainer: top-K %d is outside 1..%d", loss->topk,
                       c->vocab_size < BL_TOPK_MAX ? c->vocab_size : BL_TOPK_MAX);
    if (!(loss->tau > 0.0f)) return bl_fail(err, "device trainer: tau %g must be positive", loss->tau);
    tr->be = be;
    tr->student = st;
    tr->loss = *loss;
    tr->opt = *opt;
    if (o) tr->o = *o;
    tr->B = B;
    tr->T = T;
    tr->K = loss->w_topk != 0.0f ? loss->topk : 1;
    tr->teacher_cache = true;
    size_t row_bytes = (size_t)T * c->vocab_size * sizeof(float);
    int fit = (int)MAX2((size_t)1, ((size_t)256 << 20) / (row_bytes ? row_bytes : 1));
    tr->chunk = tr->o.loss_chunk_seqs > 0 ? tr->o.loss_chunk_seqs : fit;
    if (tr->chunk > B) tr->chunk = B;
    size_t M = (size_t)B * T;
    BlMemStats m0, m1;
    be->mem_stats(&m0, false);
    if (bl_device_model_build(&tr->dm, st->model, be, err)) goto fail;
    tr->m = &tr->dm.model;
    be->mem_stats(&m1, false);
    tr->weight_bytes = m1.live > m0.live ? m1.live - m0.live : 0;
    if (bl_build_forward_state(&tr->teacher, tr->m, be, B, T, true, err) ||
        bl_dev_student_upload(tr, err) || alloc_acts(tr, err) || alloc_lscratch(tr, err))
        goto fail;
    if (!(tr->h_ids = bl_malloc(sizeof(int) * M, err)) ||
        !(tr->h_pos = bl_malloc(sizeof(int) * M, err)) ||
        !(tr->h_targets = bl_malloc(sizeof(int) * M, err)) ||
        !(tr->h_tok = bl_malloc(M, err)) || !(tr->h_hid = bl_malloc(M, err)) ||
        !(tr->h_lens = bl_malloc(sizeof(int) * B, err)) ||
        !(tr->block_gn = bl_calloc((size_t)c->n_layers, sizeof(double), err)) ||
        bl_batch_key_build(&tr->cache, B, T, err))
        goto fail;
    return 0;
fail:
    bl_device_trainer_free(tr);
    return bl_fail_prefix(err, "device trainer on %s", be->name);
}

void bl_device_trainer_free(BlDeviceTrainer *tr) {
    if (!tr->be) return;
    free_acts(tr);
    bl_dev_student_free(tr);
    bl_free_forward_state(&tr->teacher);
    if (tr->m) bl_device_model_free(&tr->dm);
    free(tr->h_ids);
    free(tr->h_pos);
    free(tr->h_targets);
    free(tr->h_tok);
    free(tr->h_hid);
    free(tr->h_lens);
    free(tr->block_gn);
    bl_batch_key_free(&tr->cache);
    memset(tr, 0, sizeof *tr);
}

int bl_device_trainer_upload(BlDeviceTrainer *tr, BlError *err) {
    const BlStudentConfig *sc = &tr->student->cfg;
    if (sc->subln != (tr->a.rstd_sub != NULL) || sc->post_attn_norm != (tr->a.opre != NULL))
        return bl_fail(err, "device trainer: the student's SubLN / post-attention norm changed; "
                       "build a new trainer");
    if (bl_dev_student_upload(tr, err) || alloc_lscratch(tr, err)) return -1;
    return 0;
}

// ----------------------------------------------------------------------------
// the micro-batch: checks, staging, the teacher

/* Validates tokens and lens (as the CPU forward) and uploads ids (padding →
 * token 0), positions and lens into the teacher state, and the loss rows. */
static int stage_batch(BlDeviceTrainer *tr, const int *tokens, const int *lens,
                       const uint8_t *mask, int B, int T, BlError *err) {
    const BlBackend *be = tr->be;
    const BlStudentConfig *sc = &tr->student->cfg;
    int V = tr->m->cfg.vocab_size;
    if (B < 1 || B > tr->B || T < 1 || T > tr->T)
        return bl_fail(err, "micro-batch %d x %d exceeds the trainer's %d x %d", B, T, tr->B,
                       tr->T);
    if (bl_actq_levels(sc->act_bits) < 0 || !(sc->lambda >= 0.0f && sc->lambda <= 1.0f))
        return bl_fail(err, "student: activation width %d / lambda %g is not valid",
                       sc->act_bits, sc->lambda);
    if (sc->subln != (tr->a.rstd_sub != NULL) || sc->post_attn_norm != (tr->a.opre != NULL))
        return bl_fail(err, "device trainer: the student's SubLN / post-attention norm changed; "
                       "build a new trainer");
    if (!bl_dev_student_current(tr))
        return bl_fail(err, "device trainer: the student's trainable tensors changed since the "
                       "upload (call bl_device_trainer_upload after changing it)");
    for (int b = 0; b < B; b++) {
        if (lens[b] < 0 || lens[b] > T)
            return bl_fail(err, "student: lens[%d] = %d is outside 0..%d", b, lens[b], T);
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int valid = t < lens[b];
            if (valid && (tokens[i] < 0 || tokens[i] >= V))
                return bl_fail(err, "student: token %d at [%d, %d] is outside the vocab (%d)",
                               tokens[i], b, t, V);
            tr->h_ids[i] = valid ? tokens[i] : 0;
            tr->h_pos[i] = t;
            tr->h_targets[i] = valid ? tokens[i] : -1;
            /* the row rule of step.h: row t predicts token t + 1 */
            tr->h_tok[i] = tr->h_hid[i] = t + 1 < lens[b] && (!mask || mask[i]);
        }
        tr->h_lens[b] = lens[b];
    }
    size_t M = (size_t)B * T;
    BlForwardState *ts = &tr->teacher;
    if (be->upload(ts->ids, tr->h_ids, sizeof(int) * M, err) ||
        be->upload(ts->pos, tr->h_pos, sizeof(int) * M, err) ||
        be->upload(ts->lens, lens, sizeof(int) * B, err) ||
        be->upload(tr->a.targets, tr->h_targets, sizeof(int) * M, err) ||
        be->upload(tr->a.tok_mask, tr->h_tok, M, err) ||
        be->upload(tr->a.hid_mask, tr->h_hid, M, err))
        return -1;
    return 0;
}

/* The teacher's logits (teacher.logits) and block outputs (a.t_hidden):
 * the pieces of nn/forward.c, keeping every block's output on the backend. */
static int live_teacher(BlDeviceTrainer *tr, const int *tokens, const int *lens, int B, int T,
                        BlTeacherSource *src, BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    BlForwardState *s = &tr->teacher;
    int M = B * T, D = c->dim;
    if (tr->teacher_cache && bl_batch_key_matches(&tr->cache, tokens, lens, B, T)) {
        *src = BL_TEACHER_CACHED;
        return 0;
    }
    tr->cache.valid = false;
    be->embed(s->x, tr->m->tok_embd, s->ids, M, D);
    for (int l = 0; l < c->n_layers; l++) {
        bl_block_attn_inputs(s, l, M, s->k, s->v);
        be->attention(s->ao, s->att, s->q, s->k, s->v, s->lens, B, T, c->n_heads, c->n_kv_heads,
                      c->head_dim);
        bl_block_tail(s, l, M);
        be->copy2d(tr->a.t_hidden + (size_t)l * M * D, D, s->x, D, M, D);
    }
    bl_forward_logits(s, 0, M);
    if (be->sync(err)) return bl_fail_prefix(err, "teacher");
    bl_batch_key_store(&tr->cache, tokens, lens, B, T);
    *src = BL_TEACHER_COMPUTED;
    return 0;
}

// ----------------------------------------------------------------------------
// losses

/* rows of sequence b the token losses select (loss.c's rule, as step.c) */
static int count_token_rows(const BlDeviceTrainer *tr, int b, int T) {
    int n = 0;
    for (int t = 0; t + 1 < T; t++)
        n += tr->h_tok[b * T + t] && tr->h_targets[b * T + t + 1] >= 0;
    return n;
}

/* CE, KL and top-K KL over chunks of sequences: the chunk's student logits,
 * the losses and their gradients (weighted by the chunk's share of the
 * selected rows), then dxf = dlogits·lm_head for its rows. */
static int token_losses(BlDeviceTrainer *tr, float weight, BlStepResult *acc, BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    const BlLossConfig *lc = &tr->loss;
    BlDevActs *a = &tr->a;
    int B = tr->cur_B, T = tr->cur_T, V = c->vocab_size, D = c->dim;
    be->zero(a->dxf, sizeof(float) * (size_t)B * T * D);
    if (lc->w_ce == 0.0f && lc->w_kl == 0.0f && lc->w_topk == 0.0f) return 0;
    int N = 0;
    for (int b = 0; b < B; b++) N += count_token_rows(tr, b, T);
    if (N == 0) return 0;
    for (int b0 = 0; b0 < B; b0 += tr->chunk) {
        int nseq = B - b0 < tr->chunk ? B - b0 : tr->chunk, nc = 0;
        for (int b = b0; b < b0 + nseq; b++) nc += count_token_rows(tr, b, T);
        if (nc == 0) continue;
        size_t r0 = (size_t)b0 * T;
        int rows_n = nseq * T;
        float g = (float)((double)nc / N * weight);
        const float *tl = tr->teacher.logits + r0 * V;
        BlLossRows rows = {.tokens = a->targets + r0, .mask = a->tok_mask + r0, .B = nseq, .T = T,
                           .V = V};
        be->matmul(a->slogits, a->xf + r0 * D, tr->m->lm_head, NULL, rows_n, V, D);
        be->zero(a->dlogits, sizeof(float) * (size_t)rows_n * V);
        double ce = 0.0, kl = 0.0, tk = 0.0;
        if (lc->w_ce != 0.0f) ce = be->ce_loss(a->dlogits, lc->w_ce * g, a->slogits, &rows);
        if (lc->w_kl != 0.0f)
            kl = be->kl_loss(a->dlogits, lc->w_kl * g, a->slogits, tl, &rows, lc->tau);
        if (lc->w_topk != 0.0f) {
            be->topk_logprobs(a->topk_ids, a->topk_logp, tl, rows_n, V, lc->topk, lc->tau);
            tk = be->topk_kl_loss(a->dlogits, lc->w_topk * g, a->slogits, a->topk_ids,
                                  a->topk_logp, lc->topk, &rows, lc->tau);
        }
        double share = (double)nc / N;
        acc->ce += share * weight * ce;
        acc->kl += share * weight * kl;
        acc->topk += share * weight * tk;
        /* dxf[rows, D] = dlogits[rows, V]·lm_head[V, D] (the head is frozen) */
        be->matmul_backward(a->dxf + r0 * D, NULL, NULL, a->dlogits, NULL, tr->m->lm_head, rows_n,
                            V, D);
    }
    return be->sync(err);
}

typedef struct {
    BlDeviceTrainer *tr;
    BlMicroLoss ml;
} HiddenCtx;

/* Adds layer l's cosine / magnitude gradient into dh, its values into acc. */
static void hidden_grad(void *vctx, int l, float *dh) {
    HiddenCtx *h = vctx;
    BlDeviceTrainer *tr = h->tr;
    size_t M = (size_t)tr->cur_B * tr->cur_T, D = (size_t)tr->m->cfg.dim;
    bl_micro_loss_hidden(&h->ml, l, tr->a.xs + (size_t)(l + 1) * M * D,
                         tr->a.t_hidden + (size_t)l * M * D, dh, tr->a.hid_mask, (int)M, (int)D);
}

// ----------------------------------------------------------------------------
// the step

int bl_device_trainer_accumulate(BlDeviceTrainer *tr, const int *tokens, const int *lens,
                                 const uint8_t *mask, int B, int T, float weight,
                                 BlStepResult *acc, BlError *err) {
    const BlConfig *c = &tr->m->cfg;
    BlTeacherSource src = BL_TEACHER_COMPUTED;
    if (stage_batch(tr, tokens, lens, mask, B, T, err) ||
        live_teacher(tr, tokens, lens, B, T, &src, err) || bl_dev_forward(tr, B, T, err))
        return -1;
    HiddenCtx hc = {.tr = tr};
    bl_micro_loss_begin(&hc.ml, &tr->loss, tr->be->hidden_loss, c->n_layers, weight, acc);
    if (token_losses(tr, weight, acc, err)) return bl_fail_prefix(err, "losses");
    bl_dev_backward(tr, hidden_grad, &hc);
    if (tr->be->sync(err)) return bl_fail_prefix(err, "backward");
    bl_micro_loss_end(&hc.ml);
    if (src > acc->teacher) acc->teacher = src;
    return 0;
}

/* AdamW over runs of consecutive tensors with the same step count: one call
 * per run (usually the whole arena) */
static void adamw_all(BlDeviceTrainer *tr) {
    for (int i = 0; i < tr->n_params;) {
        int j = i + 1;
        while (j < tr->n_params && tr->params[j].t == tr->params[i].t) j++;
        size_t off = tr->params[i].off, n = tr->params[j - 1].off + tr->params[j - 1].n - off;
        long t = tr->params[i].t + 1;
        tr->be->adamw_step(tr->p + off, tr->g + off, tr->mom1 + off, tr->mom2 + off, n, t,
                           &tr->opt.adamw);
        for (int k = i; k < j; k++) tr->params[k].t = t;
        i = j;
    }
}

/* n floats from src to dst in backend memory (copy2d takes int sizes) */
static void copy_floats(const BlBackend *be, float *dst, const float *src, size_t n) {
    const size_t chunk = (size_t)1 << 30;
    for (size_t o = 0; o < n; o += chunk) {
        int k = (int)(n - o < chunk ? n - o : chunk);
        be->copy2d(dst + o, k, src + o, k, 1, k);
    }
}

/* AdamW under the non-finite guard: the values and moments are backed up
 * (backend memory, for this step only) and put back when the update made
 * any of them NaN/±Inf, so such an update never lands (*applied false). */
static int guarded_adamw(BlDeviceTrainer *tr, bool *applied, BlError *err) {
    const BlBackend *be = tr->be;
    size_t n = tr->n_floats;
    float *bk = be->alloc(sizeof(float) * 3 * n, err);
    long *t = bl_malloc(sizeof(long) * (size_t)(tr->n_params ? tr->n_params : 1), err);
    if (!bk || !t) {
        if (bk) be->free(bk);
        free(t);
        return bl_fail_prefix(err, "device trainer: the update guard's backup");
    }
    float *arena[3] = {tr->p, tr->mom1, tr->mom2};
    for (int a = 0; a < 3; a++) copy_floats(be, bk + a * n, arena[a], n);
    for (int i = 0; i < tr->n_params; i++) t[i] = tr->params[i].t;
    adamw_all(tr);
    *applied = !(be->nonfinite(tr->p, n) || be->nonfinite(tr->mom1, n) || be->nonfinite(tr->mom2, n));
    if (!*applied) {
        for (int a = 0; a < 3; a++) copy_floats(be, arena[a], bk + a * n, n);
        for (int i = 0; i < tr->n_params; i++) tr->params[i].t = t[i];
    }
    int rc = be->sync(err);
    be->free(bk);
    free(t);
    return rc;
}

int bl_device_trainer_update(BlDeviceTrainer *tr, BlStepResult *res, BlError *err) {
    const BlBackend *be = tr->be;
    int nl = tr->m->cfg.n_layers;
    double total = 0.0;
    memset(tr->block_gn, 0, sizeof(double) * nl);
    memset(res->kind_grad_norm, 0, sizeof res->kind_grad_norm);
    be->sumsq_segments(tr->seg_sq, tr->g, tr->seg, tr->n_params);
    for (int i = 0; i < tr->n_params; i++) {
        double sq = tr->seg_sq[i];
        tr->block_gn[tr->params[i].layer] += sq;
        res->kind_grad_norm[tr->params[i].kind] += sq;
        total += sq;
    }
    for (int l = 0; l < nl; l++) tr->block_gn[l] = sqrt(tr->block_gn[l]);
    for (int k = 0; k < BL_GRAD_KINDS; k++) res->kind_grad_norm[k] = sqrt(res->kind_grad_norm[k]);
    res->block_grad_norm = tr->block_gn;
    res->grad_norm = sqrt(total);
    /* a NaN or ±Inf element makes its tensor's Σg² non-finite; finite floats
     * cannot overflow a double sum of squares */
    res->skipped = !isfinite(total);
    tr->steps++;
    if (!res->skipped) {
        float max_norm = tr->opt.max_grad_norm;
        if (max_norm > 0.0f) { /* bl_grad_clip: the norm over every element in one sum */
            double norm = sqrt(be->sumsq(tr->g, tr->n_floats));
            double cf = max_norm / (norm + 1e-6);
            if (cf < 1.0) be->scale(tr->g, tr->n_floats, (float)cf);
        }
        bool applied = false;
        if (guarded_adamw(tr, &applied, err)) {
            be->zero(tr->g, sizeof(float) * tr->n_floats);
            return -1;
        }
        res->skipped = !applied;
        if (applied) bl_dev_student_refresh_cat(tr);
    }
    if (res->skipped) tr->skipped++;
    be->zero(tr->g, sizeof(float) * tr->n_floats);
    return be->sync(err);
}

int bl_device_distill_step(BlDeviceTrainer *tr, const int *tokens, const int *lens,
                           const uint8_t *mask, int n_micro, int B, int T, BlStepResult *res,
                           BlError *err) {
    memset(res, 0, sizeof *res);
    if (n_micro <= 0) return bl_fail(err, "step: %d micro-batches", n_micro);
    for (int i = 0; i < n_micro; i++) {
        size_t off = (size_t)i * B * T;
        if (bl_device_trainer_accumulate(tr, tokens + off, lens + (size_t)i * B,
                                         mask ? mask + off : NULL, B, T, 1.0f / n_micro, res,
                                         err)) {
            tr->be->zero(tr->g, sizeof(float) * tr->n_floats);
            return -1;
        }
    }
    return bl_device_trainer_update(tr, res, err);
}
