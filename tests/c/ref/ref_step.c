/* ref_step.c - the reference self-distillation step on the CPU: the
 * teacher's outputs (computed, cached or given), losses in per-sequence
 * logits chunks, backward, guards and AdamW (see ref_step.h). */
#include "ref_step.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "ops/loss.h"
#include "train/micro_loss.h"

// ----------------------------------------------------------------------------
// lifetime

int bl_ref_build_trainer(BlRefTrainer *tr, BlStudent *st, int B, int T, const BlRefLossConfig *loss,
                     const BlOptConfig *opt, BlError *err) {
    memset(tr, 0, sizeof *tr);
    const BlModel *m = st->model;
    const BlConfig *c = &m->cfg;
    int K = loss->w_topk != 0.0f ? loss->topk : 1;
    if (loss->w_topk != 0.0f && (K < 1 || K > BL_TOPK_MAX || K > c->vocab_size))
        return bl_fail(err, "trainer: top-K %d is outside 1..%d", K,
                       c->vocab_size < BL_TOPK_MAX ? c->vocab_size : BL_TOPK_MAX);
    if (!(loss->tau > 0.0f)) return bl_fail(err, "trainer: tau %g must be positive", loss->tau);
    tr->model = m;
    tr->student = st;
    tr->loss = *loss;
    tr->opt = *opt;
    tr->B = B;
    tr->T = T;
    tr->topk_K = loss->w_topk != 0.0f ? K : 0;
    tr->teacher_cache = true;
    size_t M = (size_t)B * T, V = (size_t)c->vocab_size;
    if (bl_build_forward_state(&tr->teacher, m, bl_backend_cpu(), B, T, true, err) ||
        bl_build_train_state(&tr->train, st, B, T, err))
        goto fail;
    if (!(tr->t_hidden = bl_malloc(sizeof(float) * c->n_layers * M * c->dim, err)) ||
        !(tr->slogits = bl_malloc(sizeof(float) * 2 * T * V, err)) ||
        !(tr->dlogits = bl_malloc(sizeof(float) * 2 * T * V, err)) ||
        !(tr->topk_ids = bl_malloc(sizeof(int) * 2 * T * K, err)) ||
        !(tr->topk_logp = bl_malloc(sizeof(float) * 2 * T * K, err)) ||
        !(tr->targets = bl_malloc(sizeof(int) * M, err)) ||
        !(tr->tok_mask = bl_malloc(M, err)) || !(tr->hid_mask = bl_malloc(M, err)) ||
        !(tr->block_gn = bl_calloc((size_t)c->n_layers, sizeof(double), err)) ||
        bl_batch_key_build(&tr->cache, B, T, err) ||
        !(tr->t_hid = bl_malloc(sizeof(float *) * c->n_layers, err)))
        goto fail;
    return 0;
fail:
    bl_ref_free_trainer(tr);
    return bl_fail_prefix(err, "trainer");
}

void bl_ref_free_trainer(BlRefTrainer *tr) {
    bl_free_forward_state(&tr->teacher);
    bl_free_train_state(&tr->train);
    free(tr->t_hidden);
    free(tr->slogits);
    free(tr->dlogits);
    free(tr->topk_ids);
    free(tr->topk_logp);
    free(tr->targets);
    free(tr->tok_mask);
    free(tr->hid_mask);
    free(tr->block_gn);
    bl_batch_key_free(&tr->cache);
    free(tr->g_ids);
    free(tr->g_logp);
    free(tr->g_other);
    free(tr->t_hid);
    memset(tr, 0, sizeof *tr);
}


int bl_ref_set_teacher(BlRefTrainer *tr, const BlTeacherProvider *p, BlError *err) {
    free(tr->g_ids);
    free(tr->g_logp);
    free(tr->g_other);
    tr->g_ids = NULL;
    tr->g_logp = tr->g_other = NULL;
    memset(&tr->provider, 0, sizeof tr->provider);
    tr->cache.valid = false; /* t_hidden will hold the provider's states */
    if (!p) return 0;
    const char *what = p->what ? p->what : "the given teacher";
    if (!p->fetch || p->K < 1 || p->K > BL_TOPK_MAX || p->K > tr->model->cfg.vocab_size ||
        !(p->tau > 0.0f))
        return bl_fail(err, "trainer: %s has top-K K=%d, tau %g (need 1..%d, tau > 0)", what,
                       p->K, p->tau, BL_TOPK_MAX);
    if (tr->topk_K > 0 && p->K != tr->topk_K)
        return bl_fail(err, "trainer: %s holds the top-%d, the trainer's top-K loss has k=%d",
                       what, p->K, tr->topk_K);
    size_t M = (size_t)tr->B * tr->T;
    if (!(tr->g_ids = bl_malloc(sizeof(int) * M * p->K, err)) ||
        !(tr->g_logp = bl_malloc(sizeof(float) * M * p->K, err)) ||
        !(tr->g_other = bl_malloc(sizeof(float) * M, err))) {
        bl_ref_set_teacher(tr, NULL, NULL);
        return bl_fail_prefix(err, "trainer");
    }
    tr->provider = *p;
    return 0;
}

void bl_ref_memory(const BlRefTrainer *tr, BlRefMemory *out) {
    const BlConfig *c = &tr->model->cfg;
    size_t M = (size_t)tr->B * tr->T, V = (size_t)c->vocab_size, D = (size_t)c->dim;
    size_t H = (size_t)c->hidden_dim, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, F = sizeof(float);
    int K = tr->loss.w_topk != 0.0f ? tr->loss.topk : 1;
    bl_student_memory(tr->student, &out->student);
    out->activations = tr->train.bytes_saved;
    /* the teacher state's buffers, as bl_build_forward_state sizes them */
    size_t teacher = M * (2 * sizeof(int)) + (size_t)tr->B * sizeof(int) +
                     F * (M * (3 * D + 2 * qd + 2 * kvd + 3 * H + V) +
                          (c->fused_qkv ? M * (qd + 2 * kvd) : 0) +
                          (size_t)tr->B * c->n_heads * tr->T * tr->T) +
                     M * sizeof(int);
    size_t given = tr->provider.fetch ? M * ((sizeof(int) + F) * tr->provider.K + F) : 0;
    out->scratch = tr->train.bytes_scratch + tr->train.lscratch_floats * F + teacher +
                   F * (c->n_layers * M * D + 4 * (size_t)tr->T * V + 2 * (size_t)tr->T * K) +
                   sizeof(int) * (2 * (size_t)tr->T * K + M) + 2 * M +
                   sizeof(int) * (M + (size_t)tr->B) + sizeof(float *) * c->n_layers + given;
}

// ----------------------------------------------------------------------------
// losses

typedef struct {
    BlRefTrainer *tr;
    BlMicroLoss ml;
} HiddenCtx;

/* Adds layer l's cosine / magnitude gradient into dh, and its values into acc. */
static void hidden_grad(void *vctx, int l, float *dh) {
    HiddenCtx *h = vctx;
    BlRefTrainer *tr = h->tr;
    bl_micro_loss_hidden(&h->ml, l, bl_train_hidden(&tr->train, l), tr->t_hid[l], dh,
                         tr->hid_mask, tr->train.B * tr->train.T, tr->model->cfg.dim);
}

/* Rows of sequence b that the token losses select (as loss.c's rule). */
static int count_token_rows(const BlRefTrainer *tr, int b, int T) {
    int n = 0;
    for (int t = 0; t + 1 < T; t++)
        n += tr->tok_mask[b * T + t] && tr->targets[b * T + t + 1] >= 0;
    return n;
}

/* The token losses of one sequence from its student logits (the loss side
 * only: no BLAS, so two of them can run on two threads). */
typedef struct {
    BlRefTrainer *tr;
    int b, slot;      /* sequence, and which half of the chunk buffers it uses */
    float g;          /* gradient weight: share of the selected rows × step weight */
    double ce, kl, topk;
} SeqLoss;

static void *seq_loss(void *arg) {
    SeqLoss *q = arg;
    BlRefTrainer *tr = q->tr;
    const BlRefLossConfig *lc = &tr->loss;
    int T = tr->train.T, V = tr->model->cfg.vocab_size, rows_b = tr->train.lens[q->b];
    int K = lc->w_topk != 0.0f ? lc->topk : 1;
    size_t chunk = (size_t)tr->T * V;
    float *sl = tr->slogits + q->slot * chunk, *dl = tr->dlogits + q->slot * chunk;
    const float *tl = tr->teacher.logits + (size_t)q->b * T * V; /* live teacher only */
    const BlTeacherGiven *gv = tr->given;
    BlLossRows rows = {.tokens = tr->targets + (size_t)q->b * T,
                       .mask = tr->tok_mask + (size_t)q->b * T, .B = 1, .T = T, .V = V};
    memset(dl, 0, sizeof(float) * (size_t)rows_b * V);
    if (lc->w_ce != 0.0f) q->ce = bl_ce_loss(dl, lc->w_ce * q->g, sl, &rows);
    if (lc->w_kl != 0.0f) q->kl = bl_kl_loss(dl, lc->w_kl * q->g, sl, tl, &rows, lc->tau);
    if (lc->w_topk != 0.0f) {
        const int *ids;
        const float *logp;
        if (gv) { /* checked: gv->K == lc->topk, gv->tau == lc->tau */
            ids = gv->topk_ids + (size_t)q->b * T * K;
            logp = gv->topk_logp + (size_t)q->b * T * K;
        } else {
            int *tid = tr->topk_ids + (size_t)q->slot * tr->T * K;
            float *tlp = tr->topk_logp + (size_t)q->slot * tr->T * K;
            bl_topk_logprobs(tid, tlp, tl, rows_b, V, lc->topk, lc->tau);
            ids = tid;
            logp = tlp;
        }
        q->topk = bl_topk_kl_loss(dl, lc->w_topk * q->g, sl, ids, logp, lc->topk, &rows, lc->tau);
    }
    return NULL;
}

/* CE, KL and top-K KL two sequences at a time: their student logits (one
 * sgemm each), the losses and their gradients (weighted by each sequence's
 * share of the selected rows; the second sequence on a helper thread, since
 * the softmaxes are serial code), then dxf = dlogits·lm_head for their rows. */
static void token_losses(BlRefTrainer *tr, float weight, BlStepResult *acc) {
    const BlConfig *c = &tr->model->cfg;
    const BlRefLossConfig *lc = &tr->loss;
    BlTrainState *ts = &tr->train;
    int B = ts->B, T = ts->T, V = c->vocab_size, D = c->dim;
    size_t chunk = (size_t)tr->T * V;
    memset(ts->dxf, 0, sizeof(float) * (size_t)B * T * D);
    if (lc->w_ce == 0.0f && lc->w_kl == 0.0f && lc->w_topk == 0.0f) return;
    int N = 0;
    for (int b = 0; b < B; b++) N += count_token_rows(tr, b, T);
    if (N == 0) return;
    for (int b0 = 0; b0 < B; b0 += 2) {
        SeqLoss q[2] = {{0}};
        int n = 0;
        for (int b = b0; b < B && b < b0 + 2; b++) {
            int nb = count_token_rows(tr, b, T);
            if (nb == 0) continue;
            q[n] = (SeqLoss){.tr = tr, .b = b, .slot = n, .g = (float)((double)nb / N * weight)};
            bl_train_logits(ts, b * T, ts->lens[b], tr->slogits + n * chunk);
            n++;
        }
        pthread_t th;
        int helper = n == 2 && pthread_create(&th, NULL, seq_loss, &q[1]) == 0;
        for (int i = 0; i < n; i++)
            if (i == 0 || !helper) seq_loss(&q[i]);
        if (helper) pthread_join(th, NULL);
        for (int i = 0; i < n; i++) { /* in sequence order: the sums are deterministic */
            double share = (double)count_token_rows(tr, q[i].b, T) / N;
            acc->ce += share * weight * q[i].ce;
            acc->kl += share * weight * q[i].kl;
            acc->topk += share * weight * q[i].topk;
            /* dxf[rows, D] = dlogits[rows, V]·lm_head[V, D] (the head is frozen) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ts->lens[q[i].b], D, V, 1.0f,
                        tr->dlogits + i * chunk, V, tr->model->lm_head, D, 0.0f,
                        ts->dxf + (size_t)q[i].b * T * D, D);
        }
    }
}

// ----------------------------------------------------------------------------
// the step

static void set_masks(BlRefTrainer *tr, const int *tokens, const int *lens, const uint8_t *mask,
                      int B, int T) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int valid = t < lens[b];
            tr->targets[i] = valid ? tokens[i] : -1;
            /* the row rule of step.h: row t predicts token t + 1 */
            tr->tok_mask[i] = tr->hid_mask[i] = t + 1 < lens[b] && (!mask || mask[i]);
        }
}

/* The live teacher's logits and hidden states of the micro-batch: computed,
 * or still there from the previous micro-batch. */
static int live_teacher(BlRefTrainer *tr, const int *tokens, const int *lens, int B, int T,
                        BlTeacherSource *src, BlError *err) {
    const BlConfig *c = &tr->model->cfg;
    size_t M = (size_t)B * T;
    float *hid[c->n_layers];
    for (int l = 0; l < c->n_layers; l++) tr->t_hid[l] = hid[l] = tr->t_hidden + l * M * c->dim;
    if (tr->teacher_cache && bl_batch_key_matches(&tr->cache, tokens, lens, NULL, B, T)) {
        *src = BL_TEACHER_CACHED;
        return 0;
    }
    tr->cache.valid = false;
    if (bl_forward(&tr->teacher, tokens, lens, NULL, B, T, NULL, hid, err))
        return bl_fail_prefix(err, "teacher");
    /* the CPU backend's state is host memory: the teacher logits stay there */
    bl_forward_logits(&tr->teacher, 0, (int)M);
    bl_batch_key_store(&tr->cache, tokens, lens, NULL, B, T);
    *src = BL_TEACHER_COMPUTED;
    return 0;
}

/* What a step from given outputs cannot do, named. */
static int check_given(const BlRefTrainer *tr, const BlTeacherGiven *g, const char *what,
                       BlError *err) {
    const BlRefLossConfig *lc = &tr->loss;
    if (lc->w_kl != 0.0f)
        return bl_fail(err, "the full KL (weight %g) needs the teacher's full logits, which %s "
                       "does not hold: set kl = 0 (the top-K KL is served) or run the teacher live",
                       lc->w_kl, what);
    if ((lc->w_cos != 0.0f || lc->w_mag != 0.0f) && !g->hidden)
        return bl_fail(err, "the hidden-state losses (cos %g, mag %g) need the teacher's hidden "
                       "states, which %s does not hold (make the trace with hidden states)",
                       lc->w_cos, lc->w_mag, what);
    if (lc->w_topk != 0.0f && g->K != lc->topk)
        return bl_fail(err, "%s holds the teacher's top-%d, the top-K loss has k=%d", what, g->K,
                       lc->topk);
    if (lc->w_topk != 0.0f && g->tau != lc->tau)
        return bl_fail(err, "%s holds log-probabilities at tau %g, the step's tau is %g "
                       "(top-K + other at another tau needs the full distribution)",
                       what, g->tau, lc->tau);
    return 0;
}

/* Student forward, losses and backward, the teacher's outputs in place
 * (tr->t_hid, and the live logits or tr->given). */
static int accumulate(BlRefTrainer *tr, const int *tokens, const int *lens, const uint8_t *mask,
                      int B, int T, float weight, BlStepResult *acc, BlError *err) {
    const BlConfig *c = &tr->model->cfg;
    if (bl_train_forward(&tr->train, tr->student, tokens, lens, B, T, err))
        return bl_fail_prefix(err, "student");
    set_masks(tr, tokens, lens, mask, B, T);
    HiddenCtx hc = {.tr = tr};
    /* the shared micro-batch bookkeeping reads the trainer's loss-mix type */
    BlLossConfig mix = {.w_ce = tr->loss.w_ce, .w_kl = tr->loss.w_kl, .w_topk = tr->loss.w_topk,
                        .w_cos = tr->loss.w_cos, .w_mag = tr->loss.w_mag, .tau = tr->loss.tau,
                        .layer_w = tr->loss.layer_w};
    bl_micro_loss_begin(&hc.ml, &mix, bl_hidden_loss, c->n_layers, weight, acc);
    token_losses(tr, weight, acc);
    bl_train_backward(&tr->train, tr->student, tr->train.dxf, hidden_grad, &hc);
    bl_micro_loss_end(&hc.ml);
    return 0;
}

static void note_source(BlStepResult *acc, BlTeacherSource s) {
    if (s > acc->teacher) acc->teacher = s;
}

static int check_shape(const BlRefTrainer *tr, int B, int T, BlError *err) {
    if (B < 1 || B > tr->B || T < 1 || T > tr->T)
        return bl_fail(err, "micro-batch %d x %d exceeds the trainer's %d x %d", B, T, tr->B,
                       tr->T);
    return 0;
}

int bl_ref_accumulate_given(BlRefTrainer *tr, const int *tokens, const int *lens,
                                const uint8_t *mask, int B, int T, float weight,
                                const BlTeacherGiven *given, BlStepResult *acc, BlError *err) {
    const char *what = tr->provider.what ? tr->provider.what : "the given teacher";
    if (check_shape(tr, B, T, err) || check_given(tr, given, what, err)) return -1;
    const BlConfig *c = &tr->model->cfg;
    for (int l = 0; l < c->n_layers; l++) tr->t_hid[l] = given->hidden ? given->hidden[l] : NULL;
    tr->given = given;
    int rc = accumulate(tr, tokens, lens, mask, B, T, weight, acc, err);
    tr->given = NULL;
    if (rc == 0) note_source(acc, BL_TEACHER_TRACE);
    return rc;
}

int bl_ref_check_teacher(const BlRefTrainer *tr, BlError *err) {
    const BlTeacherProvider *p = &tr->provider;
    if (!p->fetch) return 0;
    static const float *const some[1]; /* any non-NULL array: only presence is checked */
    BlTeacherGiven g = {.K = p->K, .tau = p->tau, .hidden = p->has_hidden ? some : NULL};
    return check_given(tr, &g, p->what ? p->what : "the given teacher", err);
}

int bl_ref_accumulate(BlRefTrainer *tr, const int *tokens, const int *lens, const uint8_t *mask,
                          int B, int T, float weight, BlStepResult *acc, BlError *err) {
    if (check_shape(tr, B, T, err)) return -1;
    const BlTeacherProvider *p = &tr->provider;
    if (p->fetch) {
        const BlConfig *c = &tr->model->cfg;
        size_t M = (size_t)B * T;
        bool hid = tr->loss.w_cos != 0.0f || tr->loss.w_mag != 0.0f;
        float *hidden[c->n_layers];
        for (int l = 0; l < c->n_layers; l++) hidden[l] = tr->t_hidden + l * M * c->dim;
        BlTeacherGiven g = {.K = p->K, .tau = p->tau, .topk_ids = tr->g_ids,
                            .topk_logp = tr->g_logp,
                            .hidden = hid && p->has_hidden ? (const float *const *)hidden : NULL};
        if (check_given(tr, &g, p->what ? p->what : "the given teacher", err)) return -1;
        tr->cache.valid = false; /* t_hidden is about to hold the provider's states */
        if (p->fetch(p->ctx, tokens, lens, B, T, tr->g_ids, tr->g_logp, tr->g_other,
                     g.hidden ? hidden : NULL, err))
            return -1;
        return bl_ref_accumulate_given(tr, tokens, lens, mask, B, T, weight, &g, acc, err);
    }
    BlTeacherSource src = BL_TEACHER_COMPUTED;
    if (live_teacher(tr, tokens, lens, B, T, &src, err) ||
        accumulate(tr, tokens, lens, mask, B, T, weight, acc, err))
        return -1;
    note_source(acc, src);
    return 0;
}

void bl_ref_update(BlRefTrainer *tr, BlStepResult *res) {
    BlStudent *st = tr->student;
    int nl = tr->model->cfg.n_layers;
    double total = 0.0;
    memset(tr->block_gn, 0, sizeof(double) * nl);
    memset(res->kind_grad_norm, 0, sizeof res->kind_grad_norm);
    for (int i = 0; i < st->n_params; i++) {
        double n = bl_grad_norm(&st->params[i], 1), sq = n * n;
        tr->block_gn[st->param_layer[i]] += sq;
        res->kind_grad_norm[st->param_kind[i]] += sq;
        total += sq;
    }
    for (int l = 0; l < nl; l++) tr->block_gn[l] = sqrt(tr->block_gn[l]);
    for (int k = 0; k < BL_GRAD_KINDS; k++) res->kind_grad_norm[k] = sqrt(res->kind_grad_norm[k]);
    res->block_grad_norm = tr->block_gn;
    res->grad_norm = sqrt(total);
    res->skipped = bl_grad_nonfinite(st->params, st->n_params);
    tr->steps++;
    if (!res->skipped) {
        bl_grad_clip(st->params, st->n_params, tr->opt.max_grad_norm);
        /* the guard covers the update too: one that would make any weight or
         * moment NaN/±Inf (an absurd LR, say) is not applied at all */
        for (int i = 0; i < st->n_params && !res->skipped; i++)
            res->skipped = !bl_adamw_step_finite(st->params[i].p, st->params[i].g, &st->opt[i],
                                                 &tr->opt.adamw);
    }
    if (res->skipped) {
        tr->skipped++;
    } else {
        for (int i = 0; i < st->n_params; i++)
            bl_adamw_step(st->params[i].p, st->params[i].g, &st->opt[i], &tr->opt.adamw);
    }
    bl_student_zero_grad(st);
}

/* the rows of n sequences the row rule selects (t + 1 < lens[b], mask) */
static long selected_rows(const int *lens, const uint8_t *mask, int n, int T) {
    long rows = 0;
    for (int b = 0; b < n; b++)
        for (int t = 0; t + 1 < lens[b] && t + 1 < T; t++) rows += !mask || mask[(size_t)b * T + t];
    return rows;
}

int bl_ref_distill_step(BlRefTrainer *tr, const int *tokens, const int *lens, const uint8_t *mask,
                    int n_micro, int B, int T, BlStepResult *res, BlError *err) {
    memset(res, 0, sizeof *res);
    if (n_micro <= 0) return bl_fail(err, "step: %d micro-batches", n_micro);
    long all = selected_rows(lens, mask, n_micro * B, T);
    for (int i = 0; i < n_micro; i++) {
        size_t off = (size_t)i * B * T;
        const uint8_t *mk = mask ? mask + off : NULL;
        long rows = selected_rows(lens + (size_t)i * B, mk, B, T);
        float w = all > 0 ? (float)((double)rows / (double)all) : 0.0f;
        if (bl_ref_accumulate(tr, tokens + off, lens + (size_t)i * B, mk, B, T, w, res, err)) {
            bl_student_zero_grad(tr->student);
            return -1;
        }
    }
    bl_ref_update(tr, res);
    return 0;
}

// ----------------------------------------------------------------------------
// benchmark
