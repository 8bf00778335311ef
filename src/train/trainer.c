/* trainer.c - the trainer's step (see trainer.h): its buffers, the
 * teacher's outputs (computed through the backend, still there from the
 * previous micro-batch, or given by a provider), the token losses over
 * chunks of sequences, the hidden losses and the attention-relation loss
 * (relation_loss.h) during the backward, and the update (norms, non-finite
 * skip, clip, guarded AdamW). */
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/loss.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "train/micro_loss.h"
#include "train/relation_loss.h"

#define MAX2(a, b) ((a) > (b) ? (a) : (b))

BlStepParams bl_step_params(const BlStudent *st, const BlLossConfig *loss,
                            const BlOptConfig *opt) {
    return (BlStepParams){.loss = *loss, .opt = *opt, .lambda = st->cfg.lambda,
                          .act_bits = st->cfg.act_bits, .lambda_acts = st->cfg.lambda_acts};
}

const char *bl_teacher_source_name(BlTeacherSource s) {
    switch (s) {
    case BL_TEACHER_CACHED: return "cached";
    case BL_TEACHER_TRACE: return "trace";
    case BL_TEACHER_COMPUTED: return "computed";
    default: return "none";
    }
}

// ----------------------------------------------------------------------------
// the buffer table

int bl_trainer_default_chunk(const BlBackend *be, const BlConfig *c, const BlTrainerShape *sh) {
    int chunk;
    if (sh->loss_chunk_seqs > 0) chunk = sh->loss_chunk_seqs;
    else if (strcmp(be->name, "cpu") == 0) chunk = 1;
    else {
        size_t row_bytes = (size_t)sh->seq * c->vocab_size * sizeof(float);
        chunk = (int)MAX2((size_t)1, ((size_t)256 << 20) / (row_bytes ? row_bytes : 1));
    }
    return chunk > sh->batch ? sh->batch : chunk;
}

BlAttentionProbs bl_trainer_attention_probs(const BlBackend *be, const BlTrainerShape *sh) {
    if (sh->attention_probs != BL_ATT_BACKEND_DEFAULT) return sh->attention_probs;
    return strcmp(be->name, "cpu") == 0 ? BL_ATT_RECOMPUTE : BL_ATT_SAVE;
}

void bl_trainer_buffers(BlTrainerBuffers *out, const BlConfig *c, const BlStudentConfig *sc,
                        const BlTrainerShape *sh, int chunk, int rmax) {
    size_t M = (size_t)sh->batch * sh->seq, L = (size_t)c->n_layers, D = (size_t)c->dim;
    size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size, F = sizeof(float);
    size_t maxin = MAX2(MAX2(D, qd), H), maxout = MAX2(D, qd + 2 * kvd);
    /* the largest block linear (Weff scratch): the projections' shapes */
    size_t wmax = MAX2(c->fused_qkv ? (qd + 2 * kvd) * D : MAX2(qd, kvd) * D, D * qd);
    wmax = MAX2(wmax, MAX2(c->fused_gate_up ? 2 * H * D : H * D, D * H));
    size_t CT = (size_t)chunk * sh->seq, K = (size_t)(sh->topk > 0 ? sh->topk : 1);
    bool sub = sc->subln, pan = sc->post_attn_norm;
    memset(out, 0, sizeof *out);
#define BUF(id, n, s) (out->bytes[id] = (n), out->saved[id] = (s))
    BUF(BL_BUF_TARGETS, M * sizeof(int), 0);
    BUF(BL_BUF_TOK_MASK, M, 0);
    BUF(BL_BUF_HID_MASK, M, 0);
    BUF(BL_BUF_XS, (L + 1) * M * D * F, 1);
    BUF(BL_BUF_RSTD1, L * M * F, 1);
    BUF(BL_BUF_RSTD2, L * M * F, 1);
    BUF(BL_BUF_Q, L * M * qd * F, 1);
    BUF(BL_BUF_K, L * M * kvd * F, 1);
    BUF(BL_BUF_V, L * M * kvd * F, 1);
    bool recompute = sh->attention_probs == BL_ATT_RECOMPUTE;
    BUF(BL_BUF_ATT, (recompute ? 1 : L) * M * c->n_heads * sh->seq * F, !recompute);
    BUF(BL_BUF_AO, L * M * qd * F, 1);
    BUF(BL_BUF_XMID, L * M * D * F, 1);
    BUF(BL_BUF_GU, L * M * 2 * H * F, 1);
    BUF(BL_BUF_OPRE, pan ? L * M * D * F : 0, 1);
    BUF(BL_BUF_RSTD_PA, pan ? L * M * F : 0, 1);
    BUF(BL_BUF_RSTD_SUB, sub ? L * BL_LIN_KINDS * M * F : 0, 1);
    BUF(BL_BUF_XF, M * D * F, 1);
    BUF(BL_BUF_RSTD_F, M * F, 1);
    BUF(BL_BUF_XN, M * D * F, 0);
    BUF(BL_BUF_XQ, M * maxin * F, 0);
    BUF(BL_BUF_Y, M * maxout * F, 0);
    BUF(BL_BUF_ACT, M * H * F, 0);
    BUF(BL_BUF_WEFF, wmax * F, 0);
    BUF(BL_BUF_LSCRATCH, M * (size_t)MAX2(rmax, 1) * F, 0);
    BUF(BL_BUF_DX, M * D * F, 0);
    BUF(BL_BUF_DX2, M * maxin * F, 0);
    BUF(BL_BUF_DXN, M * D * F, 0);
    BUF(BL_BUF_DXF, M * D * F, 0);
    BUF(BL_BUF_DGU, M * 2 * H * F, 0);
    BUF(BL_BUF_DACT, M * H * F, 0);
    BUF(BL_BUF_DQ, M * qd * F, 0);
    BUF(BL_BUF_DK, M * kvd * F, 0);
    BUF(BL_BUF_DV, M * kvd * F, 0);
    BUF(BL_BUF_DAO, M * qd * F, 0);
    BUF(BL_BUF_SLOGITS, CT * V * F, 0);
    BUF(BL_BUF_DLOGITS, CT * V * F, 0);
    BUF(BL_BUF_TOPK_IDS, sh->topk > 0 ? M * K * sizeof(int) : 0, 0);
    BUF(BL_BUF_TOPK_LOGP, sh->topk > 0 ? M * K * F : 0, 0);
    BUF(BL_BUF_T_HIDDEN, sh->hidden ? L * M * D * F : 0, 0);
    /* the relation loss: the teacher's q, k, v of its layer, and both
     * relation-logit matrices of every head of one sequence */
    bool rel = sh->relation;
    BUF(BL_BUF_REL_TQ, rel ? M * qd * F : 0, 0);
    BUF(BL_BUF_REL_TK, rel ? M * kvd * F : 0, 0);
    BUF(BL_BUF_REL_TV, rel ? M * kvd * F : 0, 0);
    BUF(BL_BUF_REL_SCRATCH,
        rel ? bl_relation_scratch_floats(MAX2(c->n_heads, c->n_kv_heads), sh->seq) * F : 0, 0);
#undef BUF
    for (int i = 0; i < BL_BUF_COUNT; i++)
        *(out->saved[i] ? &out->saved_total : &out->scratch_total) += out->bytes[i];
}

/* the BlDevActs slot of each table entry */
static void **act_slot(BlDevActs *a, int id) {
    void **slots[BL_BUF_COUNT] = {
        [BL_BUF_TARGETS] = (void **)&a->targets, [BL_BUF_TOK_MASK] = (void **)&a->tok_mask,
        [BL_BUF_HID_MASK] = (void **)&a->hid_mask, [BL_BUF_XS] = (void **)&a->xs,
        [BL_BUF_RSTD1] = (void **)&a->rstd1, [BL_BUF_RSTD2] = (void **)&a->rstd2,
        [BL_BUF_Q] = (void **)&a->q, [BL_BUF_K] = (void **)&a->k, [BL_BUF_V] = (void **)&a->v,
        [BL_BUF_ATT] = (void **)&a->att, [BL_BUF_AO] = (void **)&a->ao,
        [BL_BUF_XMID] = (void **)&a->xmid, [BL_BUF_GU] = (void **)&a->gu,
        [BL_BUF_OPRE] = (void **)&a->opre, [BL_BUF_RSTD_PA] = (void **)&a->rstd_pa,
        [BL_BUF_RSTD_SUB] = (void **)&a->rstd_sub, [BL_BUF_XF] = (void **)&a->xf,
        [BL_BUF_RSTD_F] = (void **)&a->rstd_f, [BL_BUF_XN] = (void **)&a->xn,
        [BL_BUF_XQ] = (void **)&a->xq, [BL_BUF_Y] = (void **)&a->y,
        [BL_BUF_ACT] = (void **)&a->act, [BL_BUF_WEFF] = (void **)&a->weff,
        [BL_BUF_LSCRATCH] = (void **)&a->lscratch, [BL_BUF_DX] = (void **)&a->dx,
        [BL_BUF_DX2] = (void **)&a->dx2, [BL_BUF_DXN] = (void **)&a->dxn,
        [BL_BUF_DXF] = (void **)&a->dxf, [BL_BUF_DGU] = (void **)&a->dgu,
        [BL_BUF_DACT] = (void **)&a->dact, [BL_BUF_DQ] = (void **)&a->dq,
        [BL_BUF_DK] = (void **)&a->dk, [BL_BUF_DV] = (void **)&a->dv,
        [BL_BUF_DAO] = (void **)&a->dao, [BL_BUF_SLOGITS] = (void **)&a->slogits,
        [BL_BUF_DLOGITS] = (void **)&a->dlogits, [BL_BUF_TOPK_IDS] = (void **)&a->topk_ids,
        [BL_BUF_TOPK_LOGP] = (void **)&a->topk_logp, [BL_BUF_T_HIDDEN] = (void **)&a->t_hidden,
        [BL_BUF_REL_TQ] = (void **)&a->rel_tq, [BL_BUF_REL_TK] = (void **)&a->rel_tk,
        [BL_BUF_REL_TV] = (void **)&a->rel_tv, [BL_BUF_REL_SCRATCH] = (void **)&a->rel_scratch,
    };
    return slots[id];
}

static void free_acts(BlTrainer *tr) {
    for (int i = 0; i < BL_BUF_COUNT; i++) {
        void **p = act_slot(&tr->a, i);
        if (*p) tr->be->free(*p);
        *p = NULL;
    }
}

/* (Re)allocates every buffer of the table for the student as it is now (the
 * LoRA scratch follows the newest adapter's rank). */
static int alloc_acts(BlTrainer *tr, BlError *err) {
    free_acts(tr);
    bl_trainer_buffers(&tr->buf, &tr->m->cfg, &tr->student->cfg, &tr->shape, tr->chunk, tr->ds.rmax);
    for (int i = 0; i < BL_BUF_COUNT; i++) {
        if (!tr->buf.bytes[i]) continue;
        void **p = act_slot(&tr->a, i);
        if (!(*p = tr->be->alloc(tr->buf.bytes[i], err)))
            return bl_fail_prefix(err, "trainer: activations for %d x %d tokens", tr->B, tr->T);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// lifetime

int bl_build_trainer(BlTrainer *tr, const BlBackend *be, BlStudent *st, const BlTrainerShape *sh,
                     BlError *err) {
    memset(tr, 0, sizeof *tr);
    const BlConfig *c = &st->model->cfg;
    if (sh->batch <= 0 || sh->seq <= 0)
        return bl_fail(err, "trainer: bad micro-batch %d x %d", sh->batch, sh->seq);
    if (sh->topk < 0 || (sh->topk > 0 && (sh->topk > BL_TOPK_MAX || sh->topk > c->vocab_size)))
        return bl_fail(err, "trainer: top-K %d is outside 1..%d", sh->topk,
                       c->vocab_size < BL_TOPK_MAX ? c->vocab_size : BL_TOPK_MAX);
    if (sh->relation && (sh->relation_layer < 0 || sh->relation_layer >= c->n_layers))
        return bl_fail(err, "trainer: relation_layer %d is outside 0..%d (the model has %d layers)",
                       sh->relation_layer, c->n_layers - 1, c->n_layers);
    tr->be = be;
    tr->student = st;
    tr->shape = *sh;
    tr->B = sh->batch;
    tr->T = sh->seq;
    tr->K = sh->topk > 0 ? sh->topk : 1;
    tr->chunk = bl_trainer_default_chunk(be, c, sh);
    tr->shape.attention_probs = bl_trainer_attention_probs(be, sh);
    size_t M = (size_t)tr->B * tr->T;
    if (bl_build_device_student(&tr->ds, be, st, true, err)) goto fail;
    tr->m = tr->ds.m;
    /* the teacher's logits: the whole micro-batch's when one chunk holds it
     * (formed once per teacher forward, kept by the cache), else a chunk's
     * at a time, formed when its losses need them */
    if (bl_build_forward_state_rows(&tr->teacher, tr->m, be, tr->B, tr->T, true,
                                    tr->chunk * tr->T, err) ||
        alloc_acts(tr, err))
        goto fail;
    int np = st->n_params > 0 ? st->n_params : 1;
    if (!(tr->h_ids = bl_malloc(sizeof(int) * M, err)) ||
        !(tr->h_pos = bl_malloc(sizeof(int) * M, err)) ||
        !(tr->h_targets = bl_malloc(sizeof(int) * M, err)) ||
        !(tr->h_tok = bl_malloc(M, err)) || !(tr->h_hid = bl_malloc(M, err)) ||
        !(tr->h_lens = bl_malloc(sizeof(int) * tr->B, err)) ||
        !(tr->seg_sq = bl_calloc((size_t)np, sizeof(double), err)) ||
        !(tr->t_backup = bl_calloc((size_t)np, sizeof(long), err)) ||
        !(tr->block_gn = bl_calloc((size_t)c->n_layers, sizeof(double), err)) ||
        bl_batch_key_build(&tr->cache, tr->B, tr->T, err))
        goto fail;
    return 0;
fail:
    bl_free_trainer(tr);
    return bl_fail_prefix(err, "trainer on %s", be->name);
}

static void free_given(BlTrainer *tr) {
    free(tr->g_ids);
    free(tr->g_logp);
    free(tr->g_other);
    free(tr->g_hidden);
    tr->g_ids = NULL;
    tr->g_logp = tr->g_other = tr->g_hidden = NULL;
}

void bl_free_trainer(BlTrainer *tr) {
    if (!tr->be) return;
    free_acts(tr);
    bl_free_forward_state(&tr->teacher);
    bl_free_device_student(&tr->ds);
    free(tr->h_ids);
    free(tr->h_pos);
    free(tr->h_targets);
    free(tr->h_tok);
    free(tr->h_hid);
    free(tr->h_lens);
    free(tr->seg_sq);
    free(tr->t_backup);
    free(tr->block_gn);
    free_given(tr);
    if (tr->g_acc) tr->be->free(tr->g_acc);
    free(tr->g_host);
    bl_batch_key_free(&tr->cache);
    memset(tr, 0, sizeof *tr);
}

static int check_structure(const BlTrainer *tr, BlError *err) {
    const BlStudentConfig *sc = &tr->student->cfg;
    if (sc->subln != tr->ds.subln || sc->post_attn_norm != tr->ds.post_attn_norm)
        return bl_fail(err, "trainer: the student's SubLN / post-attention norm changed; "
                       "build a new trainer");
    return 0;
}

int bl_trainer_upload(BlTrainer *tr, BlError *err) {
    if (check_structure(tr, err) || bl_device_student_upload(&tr->ds, err)) return -1;
    tr->host_stale = false;
    int np = tr->ds.n_params > 0 ? tr->ds.n_params : 1;
    double *sq = realloc(tr->seg_sq, sizeof(double) * (size_t)np);
    if (sq) tr->seg_sq = sq;
    long *tb = realloc(tr->t_backup, sizeof(long) * (size_t)np);
    if (tb) tr->t_backup = tb;
    if (!sq || !tb) return bl_fail(err, "trainer: out of memory for %d tensors", np);
    /* the LoRA scratch follows the newest rank: only it is regrown */
    BlTrainerBuffers nb;
    bl_trainer_buffers(&nb, &tr->m->cfg, &tr->student->cfg, &tr->shape, tr->chunk, tr->ds.rmax);
    if (nb.bytes[BL_BUF_LSCRATCH] != tr->buf.bytes[BL_BUF_LSCRATCH]) {
        tr->be->free(tr->a.lscratch);
        if (!(tr->a.lscratch = tr->be->alloc(nb.bytes[BL_BUF_LSCRATCH], err))) {
            tr->buf.bytes[BL_BUF_LSCRATCH] = 0;
            return bl_fail_prefix(err, "trainer: LoRA scratch");
        }
        tr->buf = nb;
    }
    return 0;
}

int bl_trainer_download(BlTrainer *tr, BlError *err) {
    if (bl_device_student_download(&tr->ds, err)) return -1;
    tr->host_stale = false;
    return 0;
}

int bl_trainer_sync_host(BlTrainer *tr, BlError *err) {
    return tr->host_stale ? bl_trainer_download(tr, err) : 0;
}

int bl_trainer_download_grads(BlTrainer *tr, BlError *err) {
    BlStudent *st = tr->student;
    if (!bl_device_student_current(&tr->ds))
        return bl_fail(err, "trainer: the student changed since the upload");
    for (int i = 0; i < tr->ds.n_params; i++) {
        const BlDevParam *p = &tr->ds.params[i];
        if (tr->be->download(st->params[i].g, tr->ds.g + p->off, sizeof(float) * p->n, err))
            return -1;
    }
    return tr->be->sync(err);
}

// ----------------------------------------------------------------------------
// the teacher's source and what it can serve

int bl_trainer_set_teacher(BlTrainer *tr, const BlTeacherProvider *p, BlError *err) {
    free_given(tr);
    memset(&tr->provider, 0, sizeof tr->provider);
    tr->cache.valid = false; /* the buffers will hold the provider's outputs */
    if (!p) return 0;
    const char *what = p->what ? p->what : "the given teacher";
    if (tr->shape.topk > 0 && p->K != tr->shape.topk)
        return bl_fail(err, "%s holds the teacher's top-%d, the trainer was built for k=%d", what,
                       p->K, tr->shape.topk);
    if (tr->shape.topk == 0)
        return bl_fail(err, "%s serves the top-K loss only: build the trainer with k=%d", what,
                       p->K);
    const BlConfig *c = &tr->m->cfg;
    size_t M = (size_t)tr->B * tr->T;
    if (!(tr->g_ids = bl_malloc(sizeof(int) * M * p->K, err)) ||
        !(tr->g_logp = bl_malloc(sizeof(float) * M * p->K, err)) ||
        !(tr->g_other = bl_malloc(sizeof(float) * M, err)) ||
        (p->has_hidden && tr->shape.hidden &&
         !(tr->g_hidden = bl_malloc(sizeof(float) * M * c->n_layers * c->dim, err)))) {
        free_given(tr);
        return bl_fail_prefix(err, "trainer: buffers for %s", what);
    }
    tr->provider = *p;
    return 0;
}

/* What the step parameters ask that the teacher source K / τ / hidden states
 * (has_hidden) cannot serve, named; given NULL: the live teacher. */
static int check_source(const BlTrainer *tr, const BlStepParams *p, const char *what, int K,
                        float tau, bool has_hidden, BlError *err) {
    const BlLossConfig *lc = &p->loss;
    if (lc->w_kl != 0.0f)
        return bl_fail(err, "the full KL (weight %g) needs the teacher's full logits, which %s "
                       "does not hold: set kl = 0 (the top-K KL is served) or run the teacher live",
                       lc->w_kl, what);
    if (lc->w_rel != 0.0f)
        return bl_fail(err, "the attention-relation loss (rel %g) needs the teacher's q, k, v, "
                       "which %s does not hold: set rel = 0 or run the teacher live",
                       lc->w_rel, what);
    if ((lc->w_cos != 0.0f || lc->w_mag != 0.0f) && !has_hidden)
        return bl_fail(err, "the hidden-state losses (cos %g, mag %g) need the teacher's hidden "
                       "states, which %s does not hold (make the trace with hidden states)",
                       lc->w_cos, lc->w_mag, what);
    if (lc->w_topk != 0.0f && K != tr->shape.topk)
        return bl_fail(err, "%s holds the teacher's top-%d, the top-K loss has k=%d", what, K,
                       tr->shape.topk);
    if (lc->w_topk != 0.0f && tau != lc->tau)
        return bl_fail(err, "%s holds log-probabilities at tau %g, the step's tau is %g "
                       "(top-K + other at another tau needs the full distribution)",
                       what, tau, lc->tau);
    return 0;
}

int bl_trainer_check_params(const BlTrainer *tr, const BlStepParams *p, BlError *err) {
    const BlLossConfig *lc = &p->loss;
    if (bl_actq_levels(p->act_bits) < 0)
        return bl_fail(err, "act_bits: activation width %d is not 4, 8 or 16", p->act_bits);
    if (!(p->lambda >= 0.0f && p->lambda <= 1.0f))
        return bl_fail(err, "lambda: %g is outside [0, 1]", p->lambda);
    if (!(lc->tau > 0.0f) || !isfinite(lc->tau))
        return bl_fail(err, "tau: %g must be positive", lc->tau);
    float w[6] = {lc->w_ce, lc->w_kl, lc->w_topk, lc->w_cos, lc->w_mag, lc->w_rel};
    static const char *const wn[6] = {"ce", "kl", "topk", "cos", "mag", "rel"};
    for (int i = 0; i < 6; i++)
        if (!(w[i] >= 0.0f) || !isfinite(w[i]))
            return bl_fail(err, "%s: loss weight %g must be finite and >= 0", wn[i], w[i]);
    if (lc->w_topk != 0.0f && tr->shape.topk == 0)
        return bl_fail(err, "topk: the top-K loss needs a trainer built with k=");
    if ((lc->w_cos != 0.0f || lc->w_mag != 0.0f) && !tr->shape.hidden)
        return bl_fail(err, "cos/mag: the hidden-state losses need a trainer that keeps the "
                       "teacher's hidden states");
    if (lc->w_rel != 0.0f && !tr->shape.relation)
        return bl_fail(err, "rel: the attention-relation loss (weight %g) needs a trainer built "
                       "with a relation_layer", lc->w_rel);
    const BlTeacherProvider *pv = &tr->provider;
    if (pv->fetch)
        return check_source(tr, p, pv->what ? pv->what : "the given teacher", pv->K, pv->tau,
                            pv->has_hidden && tr->shape.hidden, err);
    return 0;
}

// ----------------------------------------------------------------------------
// the micro-batch: checks, staging, the teacher

/* the row rule (trainer.h) at row t of sequence b, lens[b] in 0..T */
static bool row_selected(const BlMicroBatch *mb, int b, int t) {
    size_t i = (size_t)b * mb->T + t;
    return t + 1 < mb->lens[b] && (!mb->mask || mb->mask[i]) &&
           (!mb->doc_start || mb->doc_start[i + 1] == mb->doc_start[i]);
}

long bl_micro_batch_rows(const BlMicroBatch *mb) {
    long n = 0;
    for (int b = 0; b < mb->B; b++)
        if (mb->lens[b] >= 0 && mb->lens[b] <= mb->T)
            for (int t = 0; t + 1 < mb->T; t++) n += row_selected(mb, b, t);
    return n;
}

/* Validates tokens, lens and doc_start (as the host forward) and uploads ids
 * (padding → token 0), positions, lens and doc_start into the teacher
 * state, and the loss rows. */
static int stage_batch(BlTrainer *tr, const BlMicroBatch *mb, BlError *err) {
    const BlBackend *be = tr->be;
    const int *tokens = mb->tokens, *lens = mb->lens, *ds = mb->doc_start;
    int V = tr->m->cfg.vocab_size, B = mb->B, T = mb->T;
    if (B < 1 || B > tr->B || T < 1 || T > tr->T)
        return bl_fail(err, "micro-batch %d x %d exceeds the trainer's %d x %d", B, T, tr->B,
                       tr->T);
    if (check_structure(tr, err)) return -1;
    if (!bl_device_student_current(&tr->ds))
        return bl_fail(err, "trainer: the student's trainable tensors changed since the upload "
                       "(call bl_trainer_upload after changing it)");
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
        }
        tr->h_lens[b] = lens[b];
    }
    if (ds && bl_doc_start_check(ds, lens, B, T, err)) return bl_fail_prefix(err, "student");
    /* row t predicts token t + 1 */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tr->h_tok[(size_t)b * T + t] = tr->h_hid[(size_t)b * T + t] = row_selected(mb, b, t);
    size_t M = (size_t)B * T;
    BlForwardState *ts = &tr->teacher;
    if (ds) bl_positions(tr->h_pos, ds, lens, B, T);
    ts->packed = ds != NULL;
    if (ds && be->upload(ts->doc_start, ds, sizeof(int) * M, err)) return -1;
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
static int live_teacher(BlTrainer *tr, const BlMicroBatch *mb, BlTeacherSource *src,
                        BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    BlForwardState *s = &tr->teacher;
    int B = mb->B, T = mb->T, M = B * T, D = c->dim;
    if (tr->shape.teacher_cache &&
        bl_batch_key_matches(&tr->cache, mb->tokens, mb->lens, mb->doc_start, B, T)) {
        *src = BL_TEACHER_CACHED;
        return 0;
    }
    tr->cache.valid = false;
    be->embed(s->x, tr->m->tok_embd, s->ids, M, D);
    for (int l = 0; l < c->n_layers; l++) {
        bl_block_attn_inputs(s, l, M, s->k, s->v);
        if (tr->shape.relation && l == tr->shape.relation_layer) {
            /* what the teacher's attention sees (q, k after RoPE); kept
             * whatever the step's w_rel, so the cache serves a later one */
            int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
            be->copy2d(tr->a.rel_tq, qd, s->q, qd, M, qd);
            be->copy2d(tr->a.rel_tk, kvd, s->k, kvd, M, kvd);
            be->copy2d(tr->a.rel_tv, kvd, s->v, kvd, M, kvd);
        }
        be->attention(s->ao, s->att, s->q, s->k, s->v, s->lens, bl_forward_doc_start(s), B, T,
                      c->n_heads, c->n_kv_heads, c->head_dim);
        bl_block_tail(s, l, M);
        if (tr->a.t_hidden) be->copy2d(tr->a.t_hidden + (size_t)l * M * D, D, s->x, D, M, D);
    }
    if (s->logits_rows >= M) bl_forward_logits(s, 0, M);
    if (be->sync(err)) return bl_fail_prefix(err, "teacher");
    bl_batch_key_store(&tr->cache, mb->tokens, mb->lens, mb->doc_start, B, T);
    *src = BL_TEACHER_COMPUTED;
    return 0;
}

/* Given outputs (host) into the top-K and hidden buffers. */
static int upload_given(BlTrainer *tr, const BlTeacherGiven *g, int B, int T, bool hidden,
                        BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    size_t M = (size_t)B * T;
    tr->cache.valid = false;
    if (be->upload(tr->a.topk_ids, g->topk_ids, sizeof(int) * M * g->K, err) ||
        be->upload(tr->a.topk_logp, g->topk_logp, sizeof(float) * M * g->K, err))
        return -1;
    if (hidden)
        for (int l = 0; l < c->n_layers; l++)
            if (be->upload(tr->a.t_hidden + (size_t)l * M * c->dim, g->hidden[l],
                           sizeof(float) * M * c->dim, err))
                return -1;
    return 0;
}

// ----------------------------------------------------------------------------
// losses

/* rows of sequence b the token losses select (loss.c's rule) */
static int count_token_rows(const BlTrainer *tr, int b, int T) {
    int n = 0;
    for (int t = 0; t + 1 < T; t++)
        n += tr->h_tok[b * T + t] && tr->h_targets[b * T + t + 1] >= 0;
    return n;
}

/* CE, KL and top-K KL over chunks of sequences: the chunk's student logits,
 * the losses and their gradients (weighted by the chunk's share of the
 * selected rows), then dxf = dlogits·lm_head for its rows. given: the top-K
 * buffers hold the micro-batch's given ids and log-probabilities. */
static int token_losses(BlTrainer *tr, const BlLossConfig *lc, bool given, float weight,
                        BlStepResult *acc, BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    BlDevActs *a = &tr->a;
    int B = tr->cur_B, T = tr->cur_T, V = c->vocab_size, D = c->dim, K = tr->K;
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
        const float *tl = NULL; /* the teacher's logits of the chunk's rows */
        if (!given && (lc->w_kl != 0.0f || lc->w_topk != 0.0f)) {
            if (tr->teacher.logits_rows >= B * T) tl = tr->teacher.logits + r0 * V;
            else {
                bl_forward_logits(&tr->teacher, (int)r0, rows_n);
                tl = tr->teacher.logits;
            }
        }
        BlLossRows rows = {.tokens = a->targets + r0, .mask = a->tok_mask + r0, .B = nseq, .T = T,
                           .V = V};
        be->matmul(a->slogits, a->xf + r0 * D, tr->m->lm_head, NULL, rows_n, V, D);
        be->zero(a->dlogits, sizeof(float) * (size_t)rows_n * V);
        double ce = 0.0, kl = 0.0, tk = 0.0;
        if (lc->w_ce != 0.0f) ce = be->ce_loss(a->dlogits, lc->w_ce * g, a->slogits, &rows);
        if (lc->w_kl != 0.0f)
            kl = be->kl_loss(a->dlogits, lc->w_kl * g, a->slogits, tl, &rows, lc->tau);
        if (lc->w_topk != 0.0f) {
            int *ids = a->topk_ids + r0 * K;
            float *logp = a->topk_logp + r0 * K;
            if (!given) be->topk_logprobs(ids, logp, tl, rows_n, V, K, lc->tau);
            tk = be->topk_kl_loss(a->dlogits, lc->w_topk * g, a->slogits, ids, logp, K, &rows,
                                  lc->tau);
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
    BlTrainer *tr;
    BlMicroLoss ml;
    const BlLossConfig *lc;
    float weight;
} HiddenCtx;

/* Adds layer l's cosine / magnitude gradient into dh, its values into acc. */
static void hidden_grad(void *vctx, int l, float *dh) {
    HiddenCtx *h = vctx;
    BlTrainer *tr = h->tr;
    size_t M = (size_t)tr->cur_B * tr->cur_T, D = (size_t)tr->m->cfg.dim;
    bl_micro_loss_hidden(&h->ml, l, tr->a.xs + (size_t)(l + 1) * M * D,
                         tr->a.t_hidden + (size_t)l * M * D, dh, tr->a.hid_mask, (int)M, (int)D);
}

/* At the relation layer: the relation loss's gradient into dq, dk, dv (the
 * student's saved q, k are post-RoPE, as the teacher's captured ones), its
 * value into acc. */
static void relation_grad(void *vctx, int l, float *dq, float *dk, float *dv) {
    HiddenCtx *h = vctx;
    BlTrainer *tr = h->tr;
    if (l != tr->shape.relation_layer || h->lc->w_rel == 0.0f) return;
    const BlConfig *c = &tr->m->cfg;
    int B = tr->cur_B, T = tr->cur_T;
    size_t M = (size_t)B * T;
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const BlDevActs *a = &tr->a;
    BlRelationInput in[3] = {
        {.s = a->q + (size_t)l * M * qd, .t = a->rel_tq, .ds = dq, .heads = c->n_heads, .ld = qd},
        {.s = a->k + (size_t)l * M * kvd, .t = a->rel_tk, .ds = dk, .heads = c->n_kv_heads,
         .ld = kvd},
        {.s = a->v + (size_t)l * M * kvd, .t = a->rel_tv, .ds = dv, .heads = c->n_kv_heads,
         .ld = kvd},
    };
    double rel = bl_relation_loss(tr->be, in, B, T, c->head_dim, a->hid_mask, tr->h_hid,
                                  bl_forward_doc_start(&tr->teacher), h->lc->w_rel * h->weight,
                                  a->rel_scratch);
    h->ml.acc->rel += h->weight * rel;
}

// ----------------------------------------------------------------------------
// the step

/* Student forward, losses and backward, the teacher's outputs in place. */
static int student_pass(BlTrainer *tr, int B, int T, bool given, float weight,
                        const BlStepParams *p, BlStepResult *acc, BlError *err) {
    const BlConfig *c = &tr->m->cfg;
    if (bl_trainer_forward(tr, B, T, p, err)) return -1;
    HiddenCtx hc = {.tr = tr, .lc = &p->loss, .weight = weight};
    double rel0 = acc->rel;
    bl_micro_loss_begin(&hc.ml, &p->loss, tr->be->hidden_loss, c->n_layers, weight, acc);
    if (token_losses(tr, &p->loss, given, weight, acc, err)) return bl_fail_prefix(err, "losses");
    bl_trainer_backward(tr, p, tr->a.t_hidden ? hidden_grad : NULL,
                        tr->shape.relation ? relation_grad : NULL, &hc);
    if (tr->be->sync(err)) return bl_fail_prefix(err, "backward");
    bl_micro_loss_end(&hc.ml);
    acc->total += p->loss.w_rel * (acc->rel - rel0); /* micro_loss.c knows the other terms */
    return 0;
}

int bl_trainer_accumulate_given(BlTrainer *tr, const BlMicroBatch *mb, float weight,
                                const BlTeacherGiven *given, const BlStepParams *p,
                                BlStepResult *acc, BlError *err) {
    int B = mb->B, T = mb->T;
    const char *what = tr->provider.what ? tr->provider.what : "the given teacher";
    bool hid = given->hidden && tr->shape.hidden;
    if (bl_trainer_check_params(tr, p, err) ||
        check_source(tr, p, what, given->K, given->tau, hid, err))
        return -1;
    if (tr->shape.topk == 0 || given->K != tr->shape.topk)
        return bl_fail(err, "%s holds the teacher's top-%d, the trainer was built for k=%d", what,
                       given->K, tr->shape.topk);
    if (stage_batch(tr, mb, err) ||
        upload_given(tr, given, B, T, hid && (p->loss.w_cos != 0.0f || p->loss.w_mag != 0.0f),
                     err) ||
        student_pass(tr, B, T, true, weight, p, acc, err))
        return -1;
    if (BL_TEACHER_TRACE > acc->teacher) acc->teacher = BL_TEACHER_TRACE;
    return 0;
}

int bl_trainer_accumulate(BlTrainer *tr, const BlMicroBatch *mb, float weight,
                          const BlStepParams *p, BlStepResult *acc, BlError *err) {
    const BlTeacherProvider *pv = &tr->provider;
    int B = mb->B, T = mb->T;
    if (pv->fetch) {
        const BlConfig *c = &tr->m->cfg;
        /* a trace's rows are whole sequences: a packed row's documents
         * would see positions and context the traced teacher never had */
        if (mb->doc_start)
            return bl_fail(err, "%s: teacher traces hold unpacked rows; packed batches need the "
                           "live teacher", pv->what ? pv->what : "the given teacher");
        if (B < 1 || B > tr->B || T < 1 || T > tr->T)
            return bl_fail(err, "micro-batch %d x %d exceeds the trainer's %d x %d", B, T, tr->B,
                           tr->T);
        size_t M = (size_t)B * T;
        bool hid = tr->g_hidden && (p->loss.w_cos != 0.0f || p->loss.w_mag != 0.0f);
        float *hidden[c->n_layers > 0 ? c->n_layers : 1];
        for (int l = 0; l < c->n_layers; l++)
            hidden[l] = tr->g_hidden ? tr->g_hidden + (size_t)l * M * c->dim : NULL;
        if (bl_trainer_check_params(tr, p, err)) return -1;
        if (pv->fetch(pv->ctx, mb->tokens, mb->lens, B, T, tr->g_ids, tr->g_logp, tr->g_other,
                      hid ? hidden : NULL, err))
            return -1;
        BlTeacherGiven g = {.K = pv->K, .tau = pv->tau, .topk_ids = tr->g_ids,
                            .topk_logp = tr->g_logp,
                            .hidden = tr->g_hidden ? (const float *const *)hidden : NULL};
        return bl_trainer_accumulate_given(tr, mb, weight, &g, p, acc, err);
    }
    BlTeacherSource src = BL_TEACHER_COMPUTED;
    if (bl_trainer_check_params(tr, p, err) || stage_batch(tr, mb, err) ||
        live_teacher(tr, mb, &src, err) ||
        student_pass(tr, B, T, false, weight, p, acc, err))
        return -1;
    if (src > acc->teacher) acc->teacher = src;
    return 0;
}

/* AdamW over runs of consecutive tensors with the same step count (usually
 * the whole arena): check = the guard's dry run, else the update */
static bool adamw_runs(BlTrainer *tr, const BlAdamWConfig *c, bool check) {
    BlDeviceStudent *ds = &tr->ds;
    bool ok = true;
    for (int i = 0; i < ds->n_params;) {
        int j = i + 1;
        while (j < ds->n_params && ds->params[j].t == ds->params[i].t) j++;
        size_t off = ds->params[i].off, n = ds->params[j - 1].off + ds->params[j - 1].n - off;
        long t = ds->params[i].t + 1;
        if (check) ok = ok && tr->be->adamw_check(ds->p + off, ds->g + off, ds->mom1 + off,
                                                  ds->mom2 + off, n, t, c);
        else {
            tr->be->adamw_step(ds->p + off, ds->g + off, ds->mom1 + off, ds->mom2 + off, n, t, c);
            for (int k = i; k < j; k++) ds->params[k].t = t;
        }
        i = j;
    }
    return ok;
}

int bl_trainer_update(BlTrainer *tr, const BlStepParams *p, BlStepResult *res, BlError *err) {
    const BlBackend *be = tr->be;
    BlDeviceStudent *ds = &tr->ds;
    int nl = tr->m->cfg.n_layers;
    double total = 0.0;
    memset(tr->block_gn, 0, sizeof(double) * nl);
    memset(res->kind_grad_norm, 0, sizeof res->kind_grad_norm);
    be->sumsq_segments(tr->seg_sq, ds->g, ds->seg, ds->n_params);
    for (int i = 0; i < ds->n_params; i++) {
        double sq = tr->seg_sq[i];
        tr->block_gn[ds->params[i].layer] += sq;
        res->kind_grad_norm[ds->params[i].kind] += sq;
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
    /* the activation mode the student was trained with: checkpointed, and
     * what its evaluation below λ = 1 follows */
    tr->student->cfg.lambda_acts = p->lambda_acts;
    if (!res->skipped) {
        float max_norm = p->opt.max_grad_norm;
        if (max_norm > 0.0f) { /* bl_grad_clip: the norm over every element in one sum */
            double norm = sqrt(be->sumsq(ds->g, ds->n_floats));
            double cf = max_norm / (norm + 1e-6);
            if (cf < 1.0) be->scale(ds->g, ds->n_floats, (float)cf);
        }
        /* the update guard: an update that would make any value NaN/±Inf
         * (e.g. g² overflowing v without clipping) never lands */
        res->skipped = !adamw_runs(tr, &p->opt.adamw, true);
        if (!res->skipped) {
            adamw_runs(tr, &p->opt.adamw, false);
            bl_device_student_refresh_cat(ds);
            tr->host_stale = true;
        }
    }
    if (res->skipped) tr->skipped++;
    be->zero(ds->g, sizeof(float) * ds->n_floats);
    return be->sync(err);
}

void bl_trainer_zero_grads(BlTrainer *tr) {
    tr->be->zero(tr->ds.g, sizeof(float) * tr->ds.n_floats);
}

/* bl_trainer_step, bl_trainer_step_reduce: trainer_step.c */

void bl_trainer_memory(const BlTrainer *tr, BlTrainerMemory *out) {
    bl_student_memory(tr->student, &out->student);
    out->device_student = bl_device_student_bytes(&tr->ds);
    out->activations = tr->buf.saved_total;
    const BlForwardState *t = &tr->teacher;
    const BlConfig *c = &tr->m->cfg;
    size_t M = (size_t)t->B * t->T;
    out->scratch = tr->buf.scratch_total +
                   bl_forward_state_bytes(c, t->B, t->T, t->att != NULL, t->logits_rows) +
                   (tr->g_ids ? M * ((sizeof(int) + sizeof(float)) * tr->provider.K + sizeof(float)) : 0) +
                   (tr->g_hidden ? M * c->n_layers * c->dim * sizeof(float) : 0);
    out->grad_accum = (tr->acc_n ? bl_trainer_grad_arena_bytes(tr->acc_n) : 0) +
                      (tr->host_n ? bl_trainer_grad_arena_bytes(tr->host_n) : 0);
}
