/* device_student.c - the student in backend memory (see device_student.h):
 * its upload from a host BlStudent, the download of what trains back into
 * it, the concatenated LoRA stacks that be->bitlinear_weff reads, and the
 * BitLinear every student forward applies. */
#include <stdlib.h>
#include <string.h>

#include "train/device_student.h"

BlDevLinear *bl_dev_linear(const BlDeviceStudent *ds, int l, BlLinearKind kind) {
    return &ds->lin[(size_t)l * BL_LIN_KINDS + kind];
}

static void free_arenas(BlDeviceStudent *ds) {
    const BlBackend *be = ds->be;
    void *bufs[] = {ds->cat, ds->p, ds->g, ds->mom1, ds->mom2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->free(bufs[i]);
    free(ds->lin);
    free(ds->post_norm);
    free(ds->dpost_norm);
    free(ds->params);
    free(ds->seg);
    ds->cat = ds->p = ds->g = ds->mom1 = ds->mom2 = NULL;
    ds->lin = NULL;
    ds->params = NULL;
    ds->seg = NULL;
    ds->post_norm = ds->dpost_norm = NULL;
    ds->n_params = 0;
    ds->n_floats = 0;
    ds->rmax = 0;
}

// ----------------------------------------------------------------------------
// the parameter list: the host student's order (student.c's walk)

/* Calls fn for every trainable tensor in BlStudent.params order, with the
 * device slot its arena offset will be stored into. */
typedef struct {
    BlDeviceStudent *ds;
    int n;
    size_t floats;
} Walk;

static void take(Walk *w, float *host, size_t n, int layer, int kind, float **dev_p,
                 float **dev_g, size_t *offs) {
    if (!host) return;
    if (w->ds->params) {
        w->ds->params[w->n] = (BlDevParam){.off = w->floats, .n = n, .layer = layer,
                                           .kind = kind, .host = host};
        offs[w->n] = w->floats;
        if (dev_p) *dev_p = w->ds->p + w->floats;
        if (dev_g && w->ds->g) *dev_g = w->ds->g + w->floats;
    }
    w->n++;
    w->floats += n;
}

static void walk(Walk *w, BlStudent *st, size_t *offs) {
    BlDeviceStudent *ds = w->ds;
    const BlConfig *c = &st->model->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlStudentLinear *sl = bl_student_linear(st, l, k);
            BlLoraStack *ls = &sl->lora;
            BlDevLinear *L = bl_dev_linear(ds, l, k);
            if (ls->n > 0) {
                BlLoraAdapter *a = &ls->ad[ls->n - 1];
                take(w, a->A, (size_t)a->r * ls->in, l, k, &L->A, &L->dA, offs);
                take(w, a->B, (size_t)ls->out * a->r, l, k, &L->B, &L->dB, offs);
            }
            take(w, ls->dense, (size_t)ls->out * ls->in, l, k, &L->dense, &L->ddense, offs);
            take(w, sl->subln, (size_t)ls->in, l, BL_GRAD_KIND_NORM, &L->subln, &L->dsubln, offs);
        }
        if (st->post_norm) {
            float **p = ds->post_norm ? &ds->post_norm[l] : NULL;
            float **g = ds->dpost_norm ? &ds->dpost_norm[l] : NULL;
            take(w, st->post_norm + (size_t)l * c->dim, (size_t)c->dim, l, BL_GRAD_KIND_NORM, p,
                 g, offs);
        }
    }
}

// ----------------------------------------------------------------------------
// upload

/* Every linear's stack into one host image of the cat arena: lora_b [out, R]
 * with B_i in columns r0_i.., lora_a [R, in] with (α_i/r_i)·A_i in rows r0_i.. */
static int upload_cats(BlDeviceStudent *ds, BlStudent *st, BlError *err) {
    const BlBackend *be = ds->be;
    const BlConfig *c = &st->model->cfg;
    size_t total = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlLoraStack *ls = &bl_student_linear(st, l, k)->lora;
            for (int i = 0; i < ls->n; i++) total += (size_t)ls->ad[i].r * (ls->out + ls->in);
        }
    if (!(ds->cat = be->alloc(sizeof(float) * (total ? total : 1), err))) return -1;
    float *img = bl_malloc(sizeof(float) * (total ? total : 1), err);
    if (!img) return -1;
    size_t at = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlLoraStack *ls = &bl_student_linear(st, l, k)->lora;
            BlDevLinear *L = bl_dev_linear(ds, l, k);
            int R = 0;
            for (int i = 0; i < ls->n; i++) R += ls->ad[i].r;
            L->rank = R;
            if (R == 0) continue;
            float *hb = img + at, *ha = img + at + (size_t)ls->out * R;
            L->lora_b = ds->cat + at;
            L->lora_a = ds->cat + at + (size_t)ls->out * R;
            int r0 = 0;
            for (int i = 0; i < ls->n; i++) {
                const BlLoraAdapter *ad = &ls->ad[i];
                for (int o = 0; o < ls->out; o++)
                    memcpy(hb + (size_t)o * R + r0, ad->B + (size_t)o * ad->r,
                           sizeof(float) * ad->r);
                for (size_t j = 0; j < (size_t)ad->r * ls->in; j++)
                    ha[(size_t)r0 * ls->in + j] = ad->scale * ad->A[j];
                if (i == ls->n - 1) {
                    L->r = ad->r;
                    L->r0 = r0;
                    L->scale = ad->scale;
                    if (ad->r > ds->rmax) ds->rmax = ad->r;
                }
                r0 += ad->r;
            }
            at += (size_t)R * (ls->out + ls->in);
        }
    int rc = be->upload(ds->cat, img, sizeof(float) * total, err);
    free(img);
    return rc;
}

/* arena image from the host: values, or the AdamW moments (which = 1, 2) */
static int upload_arena(BlDeviceStudent *ds, float *dev, int which, BlError *err) {
    BlStudent *st = ds->student;
    float *img = bl_malloc(sizeof(float) * (ds->n_floats ? ds->n_floats : 1), err);
    if (!img) return -1;
    for (int i = 0; i < ds->n_params; i++) {
        const BlDevParam *p = &ds->params[i];
        const float *src = which == 0 ? p->host : which == 1 ? st->opt[i].m : st->opt[i].v;
        memcpy(img + p->off, src, sizeof(float) * p->n);
    }
    int rc = ds->be->upload(dev, img, sizeof(float) * ds->n_floats, err);
    free(img);
    return rc;
}

int bl_device_student_upload(BlDeviceStudent *ds, BlError *err) {
    const BlBackend *be = ds->be;
    BlStudent *st = ds->student;
    const BlConfig *c = &st->model->cfg;
    Walk w = {.ds = ds};
    free_arenas(ds);
    ds->subln = st->cfg.subln;
    ds->post_attn_norm = st->cfg.post_attn_norm;
    size_t nl = (size_t)c->n_layers * BL_LIN_KINDS;
    if (!(ds->lin = bl_calloc(nl, sizeof *ds->lin, err))) goto fail;
    if (st->post_norm &&
        (!(ds->post_norm = bl_calloc((size_t)c->n_layers, sizeof(float *), err)) ||
         !(ds->dpost_norm = bl_calloc((size_t)c->n_layers, sizeof(float *), err))))
        goto fail;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &ds->m->layers[l].lin[k];
            if (!w->w) continue;
            BlDevLinear *L = bl_dev_linear(ds, l, k);
            L->out = w->out;
            L->in = w->in;
            L->w = w->w;
            L->b = w->b;
        }
    walk(&w, st, NULL);
    if (w.n != st->n_params) {
        bl_fail(err, "the student lists %d trainable tensors, its structure %d",
                st->n_params, w.n);
        goto fail;
    }
    ds->n_params = w.n;
    ds->n_floats = w.floats;
    size_t bytes = sizeof(float) * (w.floats ? w.floats : 1);
    if (!(ds->params = bl_calloc((size_t)w.n + 1, sizeof *ds->params, err)) ||
        !(ds->seg = bl_calloc((size_t)w.n + 1, sizeof(size_t), err)) ||
        !(ds->p = be->alloc(bytes, err)))
        goto fail;
    if (ds->trainable && (!(ds->g = be->alloc(bytes, err)) || !(ds->mom1 = be->alloc(bytes, err)) ||
                          !(ds->mom2 = be->alloc(bytes, err))))
        goto fail;
    w = (Walk){.ds = ds};
    walk(&w, st, ds->seg);
    ds->seg[w.n] = w.floats;
    for (int i = 0; i < w.n; i++) {
        const BlDevParam *p = &ds->params[i];
        if (p->host != st->params[i].p || p->n != st->params[i].n || st->opt[i].n != p->n) {
            bl_fail(err, "trainable tensor %d of the student is out of order", i);
            goto fail;
        }
        ds->params[i].t = st->opt[i].t;
    }
    if (upload_arena(ds, ds->p, 0, err) ||
        (ds->trainable && (upload_arena(ds, ds->mom1, 1, err) || upload_arena(ds, ds->mom2, 2, err))) ||
        upload_cats(ds, st, err))
        goto fail;
    return be->sync(err);
fail:
    free_arenas(ds);
    return bl_fail_prefix(err, "uploading the student to %s", be->name);
}

// ----------------------------------------------------------------------------
// download and refresh

bool bl_device_student_current(const BlDeviceStudent *ds) {
    const BlStudent *st = ds->student;
    if (st->n_params != ds->n_params) return false;
    for (int i = 0; i < ds->n_params; i++)
        if (st->params[i].p != ds->params[i].host || st->opt[i].n != ds->params[i].n) return false;
    return true;
}

int bl_device_student_download(BlDeviceStudent *ds, BlError *err) {
    const BlBackend *be = ds->be;
    BlStudent *st = ds->student;
    if (!bl_device_student_current(ds))
        return bl_fail(err, "the student's trainable tensors changed since the upload to %s "
                       "(upload it again after changing it)", be->name);
    for (int i = 0; i < ds->n_params; i++) {
        const BlDevParam *p = &ds->params[i];
        size_t bytes = sizeof(float) * p->n;
        if (be->download(p->host, ds->p + p->off, bytes, err) ||
            (ds->trainable && (be->download(st->opt[i].m, ds->mom1 + p->off, bytes, err) ||
                               be->download(st->opt[i].v, ds->mom2 + p->off, bytes, err))))
            return bl_fail_prefix(err, "downloading the student from %s", be->name);
        if (ds->trainable) st->opt[i].t = p->t;
    }
    return be->sync(err);
}

void bl_device_student_refresh_cat(BlDeviceStudent *ds) {
    const BlBackend *be = ds->be;
    const BlConfig *c = &ds->m->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            BlDevLinear *L = bl_dev_linear(ds, l, k);
            if (!L->out || L->r == 0) continue;
            float *arows = L->lora_a + (size_t)L->r0 * L->in;
            be->copy2d(L->lora_b + L->r0, L->rank, L->B, L->r, L->out, L->r);
            be->copy2d(arows, L->in, L->A, L->in, L->r, L->in);
            be->scale(arows, (size_t)L->r * L->in, L->scale);
        }
}

// ----------------------------------------------------------------------------
// lifetime

int bl_build_device_student(BlDeviceStudent *ds, const BlBackend *be, BlStudent *st,
                            bool trainable, BlError *err) {
    memset(ds, 0, sizeof *ds);
    ds->be = be;
    ds->student = st;
    ds->trainable = trainable;
    BlMemStats m0, m1;
    be->mem_stats(&m0, false);
    if (bl_device_model_build(&ds->dm, st->model, be, err)) {
        memset(ds, 0, sizeof *ds);
        return bl_fail_prefix(err, "the student on %s", be->name);
    }
    ds->m = &ds->dm.model;
    be->mem_stats(&m1, false);
    ds->weight_bytes = m1.live > m0.live ? m1.live - m0.live : 0;
    if (bl_device_student_upload(ds, err)) {
        bl_free_device_student(ds);
        return -1;
    }
    return 0;
}

void bl_free_device_student(BlDeviceStudent *ds) {
    if (!ds->be) return;
    free_arenas(ds);
    if (ds->m) bl_device_model_free(&ds->dm);
    memset(ds, 0, sizeof *ds);
}

size_t bl_device_student_bytes(const BlDeviceStudent *ds) {
    size_t cat = 0;
    const BlConfig *c = &ds->m->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlDevLinear *L = bl_dev_linear(ds, l, k);
            if (L->out) cat += (size_t)L->rank * (L->out + L->in);
        }
    /* as allocated: at least one float for the cat and for each arena */
    size_t arena = ds->n_floats ? ds->n_floats : 1;
    return sizeof(float) * ((cat ? cat : 1) + arena * (ds->trainable ? 4 : 1));
}

// ----------------------------------------------------------------------------
// the BitLinear

bool bl_bitlinear_fast_path(float lambda, int act_bits) {
    return lambda == 1.0f && (act_bits == 8 || act_bits == 4);
}

void bl_bitlinear_input(const BlBackend *be, const BlDevLinear *L, float *xq, float *rstd,
                        const float *x, int M, int act_bits, float act_lambda, float eps) {
    const float *src = x;
    if (L->subln) {
        be->rmsnorm(xq, rstd, x, L->subln, M, L->in, eps);
        src = xq;
    }
    be->actq(xq, NULL, src, M, L->in, act_bits, act_lambda, NULL);
}

void bl_bitlinear_weff_of(const BlBackend *be, const BlDevLinear *L, float *weff, float lambda) {
    BlWeffSpec w = {.w = L->w, .dense = L->dense, .lora_b = L->lora_b, .lora_a = L->lora_a,
                    .rank = L->rank, .out = L->out, .in = L->in, .lambda = lambda};
    be->bitlinear_weff(weff, &w);
}

int bl_bitlinear_apply(const BlBackend *be, const BlDevLinear *L, const float *x, float *y, int M,
                       float lambda, int act_bits, bool lambda_acts, float eps, bool fast,
                       bool have_xq, float *xq, float *rstd, float *weff, const float *weff_ready,
                       BlError *err) {
    if (fast) { /* ternary_matmul quantises its input itself */
        const float *src = x;
        if (L->subln) {
            be->rmsnorm(xq, rstd, x, L->subln, M, L->in, eps);
            src = xq;
        }
        BlWeffSpec w = {.w = L->w, .dense = L->dense, .lora_b = L->lora_b, .lora_a = L->lora_a,
                        .rank = L->rank, .out = L->out, .in = L->in, .lambda = 1.0f};
        return be->ternary_matmul(y, src, &w, L->b, M, act_bits, err);
    }
    if (!have_xq || L->subln) {
        float act_lambda = bl_act_lambda(lambda, lambda_acts);
        bl_bitlinear_input(be, L, xq, rstd, x, M, act_bits, act_lambda, eps);
    }
    if (!weff_ready) {
        bl_bitlinear_weff_of(be, L, weff, lambda);
        weff_ready = weff;
    }
    be->matmul(y, xq, weff_ready, L->b, M, L->out, L->in);
    return 0;
}
