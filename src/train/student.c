/* student.c - the student's trainable state and its parameter list (see
 * student.h). */
#include "train/student.h"

#include <stdlib.h>
#include <string.h>

#include "ops/quant.h"

// ----------------------------------------------------------------------------
// lookup

BlStudentLinear *bl_student_linear(BlStudent *s, int l, BlLinearKind kind) {
    return &s->lin[(size_t)l * BL_LIN_KINDS + kind];
}

bool bl_student_has(const BlStudent *s, int l, BlLinearKind kind) {
    return s->model->layers[l].lin[kind].w != NULL;
}

const BlLoraStack *bl_student_first_stack(const BlStudent *s) {
    const BlConfig *c = &s->model->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++)
            if (bl_student_has(s, l, k)) return &s->lin[(size_t)l * BL_LIN_KINDS + k].lora;
    return NULL;
}

int bl_student_n_adapters(const BlStudent *s) {
    const BlLoraStack *st = bl_student_first_stack(s);
    return st ? st->n : 0;
}

// ----------------------------------------------------------------------------
// the parameter list

typedef struct {
    BlParamRef *p;
    int *layer, *kind;
    int n;
} ParamList;

static void push(ParamList *pl, float *p, float *g, size_t n, int layer, int kind) {
    if (!p || !g) return;
    if (pl->p) {
        pl->p[pl->n] = (BlParamRef){.p = p, .g = g, .n = n};
        pl->layer[pl->n] = layer;
        pl->kind[pl->n] = kind;
    }
    pl->n++;
}

/* Walks the trainable tensors in params order; with pl->p NULL only counts. */
static void walk(BlStudent *s, ParamList *pl) {
    const BlConfig *c = &s->model->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(s, l, k)) continue;
            BlStudentLinear *sl = bl_student_linear(s, l, k);
            BlLoraStack *st = &sl->lora;
            if (st->n > 0) {
                BlLoraAdapter *a = &st->ad[st->n - 1];
                push(pl, a->A, a->dA, (size_t)a->r * st->in, l, k);
                push(pl, a->B, a->dB, (size_t)st->out * a->r, l, k);
            }
            push(pl, st->dense, st->ddense, (size_t)st->out * st->in, l, k);
            push(pl, sl->subln, sl->dsubln, (size_t)st->in, l, BL_GRAD_KIND_NORM);
        }
        if (s->post_norm)
            push(pl, s->post_norm + (size_t)l * c->dim, s->dpost_norm + (size_t)l * c->dim,
                 (size_t)c->dim, l, BL_GRAD_KIND_NORM);
    }
}

static void free_params(BlStudent *s) {
    for (int i = 0; i < s->n_params; i++) bl_adamw_free(&s->opt[i]);
    free(s->params);
    free(s->opt);
    free(s->param_layer);
    free(s->param_kind);
    s->params = NULL;
    s->opt = NULL;
    s->param_layer = s->param_kind = NULL;
    s->n_params = 0;
}

/* Rebuilds the list; a tensor that was already trainable keeps its moments,
 * a new one starts with zero moments. */
static int rebuild_params(BlStudent *s, BlError *err) {
    ParamList pl = {0};
    walk(s, &pl);
    size_t n = (size_t)pl.n;
    BlStudent nu = {0};
    nu.params = bl_calloc(n + 1, sizeof *nu.params, err);
    nu.opt = nu.params ? bl_calloc(n + 1, sizeof *nu.opt, err) : NULL;
    nu.param_layer = nu.opt ? bl_calloc(n + 1, sizeof(int), err) : NULL;
    nu.param_kind = nu.param_layer ? bl_calloc(n + 1, sizeof(int), err) : NULL;
    if (!nu.param_kind) {
        free_params(&nu);
        return -1;
    }
    pl = (ParamList){.p = nu.params, .layer = nu.param_layer, .kind = nu.param_kind};
    walk(s, &pl);
    for (int i = 0; i < pl.n; i++) {
        int old = -1;
        for (int j = 0; j < s->n_params && old < 0; j++)
            if (s->params[j].p == nu.params[i].p) old = j;
        if (old >= 0) {
            nu.opt[i] = s->opt[old];
            memset(&s->opt[old], 0, sizeof s->opt[old]); /* moved */
        } else if (bl_adamw_init(&nu.opt[i], nu.params[i].n, err)) {
            nu.n_params = i;
            free_params(&nu);
            return -1;
        }
    }
    nu.n_params = pl.n;
    free_params(s);
    s->params = nu.params;
    s->opt = nu.opt;
    s->param_layer = nu.param_layer;
    s->param_kind = nu.param_kind;
    s->n_params = nu.n_params;
    return 0;
}

// ----------------------------------------------------------------------------
// lifetime

static float *ones(size_t n, BlError *err) {
    float *p = bl_malloc(sizeof(float) * (n ? n : 1), err);
    for (size_t i = 0; p && i < n; i++) p[i] = 1.0f;
    return p;
}

int bl_build_student(BlStudent *s, const BlModel *m, const BlStudentConfig *cfg, BlError *err) {
    memset(s, 0, sizeof *s);
    if (cfg->lambda < 0.0f || cfg->lambda > 1.0f)
        return bl_fail(err, "student: lambda %g is outside [0, 1]", cfg->lambda);
    if (bl_actq_levels(cfg->act_bits) < 0)
        return bl_fail(err, "student: activation width %d bits is not one of 4, 8, 16",
                       cfg->act_bits);
    const BlConfig *c = &m->cfg;
    s->model = m;
    s->cfg = *cfg;
    size_t nl = (size_t)c->n_layers * BL_LIN_KINDS;
    if (!(s->lin = bl_calloc(nl, sizeof *s->lin, err))) return -1;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &m->layers[l].lin[k];
            BlStudentLinear *sl = bl_student_linear(s, l, k);
            bl_lora_init(&sl->lora, w->w ? w->out : 0, w->w ? w->in : 0);
            if (!w->w) continue;
            if (cfg->dense && bl_lora_enable_dense(&sl->lora, err)) goto fail;
            if (cfg->subln && (!(sl->subln = ones((size_t)w->in, err)) ||
                               !(sl->dsubln = bl_calloc((size_t)w->in, sizeof(float), err))))
                goto fail;
        }
    if (cfg->post_attn_norm) {
        size_t n = (size_t)c->n_layers * c->dim;
        if (!(s->post_norm = ones(n, err)) || !(s->dpost_norm = bl_calloc(n, sizeof(float), err)))
            goto fail;
    }
    if (rebuild_params(s, err)) goto fail;
    return 0;
fail:
    bl_free_student(s);
    return bl_fail_prefix(err, "student");
}

void bl_free_student(BlStudent *s) {
    if (!s->model) return;
    free_params(s);
    size_t nl = (size_t)s->model->cfg.n_layers * BL_LIN_KINDS;
    for (size_t i = 0; s->lin && i < nl; i++) {
        bl_lora_free(&s->lin[i].lora);
        free(s->lin[i].subln);
        free(s->lin[i].dsubln);
    }
    free(s->lin);
    free(s->post_norm);
    free(s->dpost_norm);
    memset(s, 0, sizeof *s);
}

// ----------------------------------------------------------------------------
// adapters

int bl_student_add_adapter(BlStudent *s, int r, float alpha, uint64_t seed, BlError *err) {
    const BlConfig *c = &s->model->cfg;
    uint64_t i = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(s, l, k)) continue;
            if (bl_lora_add_adapter(&bl_student_linear(s, l, k)->lora, r, alpha, seed + i++, err))
                return bl_fail_prefix(err, "layer %d %s", l, bl_linear_kind_name(k));
        }
    return rebuild_params(s, err);
}

int bl_student_rotate(BlStudent *s, int r, float alpha, uint64_t seed, BlError *err) {
    if (bl_student_add_adapter(s, r, alpha, seed, err)) return -1;
    for (int i = 0; i < s->n_params; i++) bl_adamw_reset(&s->opt[i]);
    return 0;
}

void bl_student_zero_grad(BlStudent *s) {
    for (int i = 0; i < s->n_params; i++) memset(s->params[i].g, 0, sizeof(float) * s->params[i].n);
}

void bl_student_memory(const BlStudent *s, BlStudentMemory *out) {
    memset(out, 0, sizeof *out);
    out->frozen_weights = bl_model_weight_bytes(s->model);
    size_t nl = (size_t)s->model->cfg.n_layers * BL_LIN_KINDS;
    for (size_t i = 0; i < nl; i++) {
        const BlLoraStack *st = &s->lin[i].lora;
        for (int a = 0; a + 1 < st->n; a++)
            out->adapters_frozen += sizeof(float) * (size_t)st->ad[a].r * (st->in + st->out);
        if (st->dense) out->dense += sizeof(float) * (size_t)st->out * st->in;
    }
    for (int i = 0; i < s->n_params; i++) {
        out->adapters_trainable += sizeof(float) * s->params[i].n;
        out->grads += sizeof(float) * s->params[i].n;
        out->optimizer += 2 * sizeof(float) * s->opt[i].n;
    }
}
