/* device_trainer_student.c - the student of the device trainer in backend
 * memory (see device_trainer.h): its upload from a host BlStudent, the
 * download of what trains back into it, and the concatenated LoRA stacks
 * that be->bitlinear_weff reads. */
#include <stdlib.h>
#include <string.h>

#include "train/device_trainer.h"

BlDevLinear *bl_dev_linear(const BlDeviceTrainer *tr, int l, BlLinearKind kind) {
    return &tr->lin[(size_t)l * BL_LIN_KINDS + kind];
}

void bl_dev_student_free(BlDeviceTrainer *tr) {
    const BlBackend *be = tr->be;
    void *bufs[] = {tr->cat, tr->p, tr->g, tr->mom1, tr->mom2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->free(bufs[i]);
    free(tr->lin);
    free(tr->post_norm);
    free(tr->dpost_norm);
    free(tr->params);
    free(tr->seg);
    free(tr->seg_sq);
    tr->cat = tr->p = tr->g = tr->mom1 = tr->mom2 = NULL;
    tr->lin = NULL;
    tr->params = NULL;
    tr->seg = NULL;
    tr->seg_sq = NULL;
    tr->post_norm = tr->dpost_norm = NULL;
    tr->n_params = 0;
    tr->n_floats = 0;
    tr->rmax = 0;
}

// ----------------------------------------------------------------------------
// the parameter list: the host student's order (student.c's walk)

/* Calls fn for every trainable tensor in BlStudent.params order, with the
 * device slot its arena offset will be stored into. */
typedef struct {
    BlDeviceTrainer *tr;
    int n;
    size_t floats;
} Walk;

static void take(Walk *w, float *host, size_t n, int layer, int kind, float **dev_p,
                 float **dev_g, size_t *offs) {
    if (!host) return;
    if (w->tr->params) {
        w->tr->params[w->n] = (BlDevParam){.off = w->floats, .n = n, .layer = layer,
                                           .kind = kind, .host = host};
        offs[w->n] = w->floats;
        if (dev_p) *dev_p = w->tr->p + w->floats;
        if (dev_g) *dev_g = w->tr->g + w->floats;
    }
    w->n++;
    w->floats += n;
}

static void walk(Walk *w, BlStudent *st, size_t *offs) {
    BlDeviceTrainer *tr = w->tr;
    const BlConfig *c = &st->model->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlStudentLinear *sl = bl_student_linear(st, l, k);
            BlLoraStack *ls = &sl->lora;
            BlDevLinear *L = bl_dev_linear(tr, l, k);
            if (ls->n > 0) {
                BlLoraAdapter *a = &ls->ad[ls->n - 1];
                take(w, a->A, (size_t)a->r * ls->in, l, k, &L->A, &L->dA, offs);
                take(w, a->B, (size_t)ls->out * a->r, l, k, &L->B, &L->dB, offs);
            }
            take(w, ls->dense, (size_t)ls->out * ls->in, l, k, &L->dense, &L->ddense, offs);
            take(w, sl->subln, (size_t)ls->in, l, BL_GRAD_KIND_NORM, &L->subln, &L->dsubln, offs);
        }
        if (st->post_norm) {
            float **p = tr->post_norm ? &tr->post_norm[l] : NULL;
            float **g = tr->dpost_norm ? &tr->dpost_norm[l] : NULL;
            take(w, st->post_norm + (size_t)l * c->dim, (size_t)c->dim, l, BL_GRAD_KIND_NORM, p,
                 g, offs);
        }
    }
}

// ----------------------------------------------------------------------------
// upload

/* Every linear's stack into one host image of the cat arena: lora_b [out, R]
 * with B_i in columns r0_i.., lora_a [R, in] with (α_i/r_i)·A_i in rows r0_i.. */
static int upload_cats(BlDeviceTrainer *tr, BlStudent *st, BlError *err) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &st->model->cfg;
    size_t total = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlLoraStack *ls = &bl_student_linear(st, l, k)->lora;
            for (int i = 0; i < ls->n; i++) total += (size_t)ls->ad[i].r * (ls->out + ls->in);
        }
    if (!(tr->cat = be->alloc(sizeof(float) * (total ? total : 1), err))) return -1;
    float *img = bl_malloc(sizeof(float) * (total ? total : 1), err);
    if (!img) return -1;
    size_t at = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlLoraStack *ls = &bl_student_linear(st, l, k)->lora;
            BlDevLinear *L = bl_dev_linear(tr, l, k);
            int R = 0;
            for (int i = 0; i < ls->n; i++) R += ls->ad[i].r;
            L->rank = R;
            if (R == 0) continue;
            float *hb = img + at, *ha = img + at + (size_t)ls->out * R;
            L->lora_b = tr->cat + at;
            L->lora_a = tr->cat + at + (size_t)ls->out * R;
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
                    if (ad->r > tr->rmax) tr->rmax = ad->r;
                }
                r0 += ad->r;
            }
            at += (size_t)R * (ls->out + ls->in);
        }
    int rc = be->upload(tr->cat, img, sizeof(float) * total, err);
    free(img);
    return rc;
}

/* arena image from the host: values, or the AdamW moments (which = 1, 2) */
static int upload_arena(BlDeviceTrainer *tr, float *dev, int which, BlError *err) {
    BlStudent *st = tr->student;
    float *img = bl_malloc(sizeof(float) * (tr->n_floats ? tr->n_floats : 1), err);
    if (!img) return -1;
    for (int i = 0; i < tr->n_params; i++) {
        const BlDevParam *p = &tr->params[i];
        const float *src = which == 0 ? p->host : which == 1 ? st->opt[i].m : st->opt[i].v;
        memcpy(img + p->off, src, sizeof(float) * p->n);
    }
    int rc = tr->be->upload(dev, img, sizeof(float) * tr->n_floats, err);
    free(img);
    return rc;
}

int bl_dev_student_upload(BlDeviceTrainer *tr, BlError *err) {
    const BlBackend *be = tr->be;
    BlStudent *st = tr->student;
    const BlConfig *c = &st->model->cfg;
    Walk w = {.tr = tr};
    bl_dev_student_free(tr);
    tr->subln = st->cfg.subln;
    tr->post_attn_norm = st->cfg.post_attn_norm;
    size_t nl = (size_t)c->n_layers * BL_LIN_KINDS;
    if (!(tr->lin = bl_calloc(nl, sizeof *tr->lin, err))) goto fail;
    if (st->post_norm &&
        (!(tr->post_norm = bl_calloc((size_t)c->n_layers, sizeof(float *), err)) ||
         !(tr->dpost_norm = bl_calloc((size_t)c->n_layers, sizeof(float *), err))))
        goto fail;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &tr->m->layers[l].lin[k];
            if (!w->w) continue;
            BlDevLinear *L = bl_dev_linear(tr, l, k);
            L->out = w->out;
            L->in = w->in;
            L->w = w->w;
            L->b = w->b;
        }
    walk(&w, st, NULL);
    if (w.n != st->n_params) {
        bl_fail(err, "device trainer: the student lists %d trainable tensors, its structure %d",
                st->n_params, w.n);
        goto fail;
    }
    tr->n_params = w.n;
    tr->n_floats = w.floats;
    size_t bytes = sizeof(float) * (w.floats ? w.floats : 1);
    if (!(tr->params = bl_calloc((size_t)w.n + 1, sizeof *tr->params, err)) ||
        !(tr->seg = bl_calloc((size_t)w.n + 1, sizeof(size_t), err)) ||
        !(tr->seg_sq = bl_calloc((size_t)w.n + 1, sizeof(double), err)) ||
        !(tr->p = be->alloc(bytes, err)) || !(tr->g = be->alloc(bytes, err)) ||
        !(tr->mom1 = be->alloc(bytes, err)) || !(tr->mom2 = be->alloc(bytes, err)))
        goto fail;
    w = (Walk){.tr = tr};
    walk(&w, st, tr->seg);
    tr->seg[w.n] = w.floats;
    for (int i = 0; i < w.n; i++) {
        const BlDevParam *p = &tr->params[i];
        if (p->host != st->params[i].p || p->n != st->params[i].n || st->opt[i].n != p->n) {
            bl_fail(err, "device trainer: trainable tensor %d of the student is out of order", i);
            goto fail;
        }
        tr->params[i].t = st->opt[i].t;
    }
    if (upload_arena(tr, tr->p, 0, err) || upload_arena(tr, tr->mom1, 1, err) ||
        upload_arena(tr, tr->mom2, 2, err) || upload_cats(tr, st, err))
        goto fail;
    return be->sync(err);
fail:
    bl_dev_student_free(tr);
    return bl_fail_prefix(err, "device trainer: uploading the student");
}

// ----------------------------------------------------------------------------
// download and refresh

bool bl_dev_student_current(const BlDeviceTrainer *tr) {
    const BlStudent *st = tr->student;
    if (st->n_params != tr->n_params) return false;
    for (int i = 0; i < tr->n_params; i++)
        if (st->params[i].p != tr->params[i].host || st->opt[i].n != tr->params[i].n) return false;
    return true;
}

int bl_device_trainer_download(BlDeviceTrainer *tr, BlError *err) {
    const BlBackend *be = tr->be;
    BlStudent *st = tr->student;
    if (!bl_dev_student_current(tr))
        return bl_fail(err, "device trainer: the student's trainable tensors changed since the "
                       "upload (call bl_device_trainer_upload after changing it)");
    for (int i = 0; i < tr->n_params; i++) {
        const BlDevParam *p = &tr->params[i];
        size_t bytes = sizeof(float) * p->n;
        if (be->download(p->host, tr->p + p->off, bytes, err) ||
            be->download(st->opt[i].m, tr->mom1 + p->off, bytes, err) ||
            be->download(st->opt[i].v, tr->mom2 + p->off, bytes, err))
            return bl_fail_prefix(err, "device trainer: downloading the student");
        st->opt[i].t = p->t;
    }
    return be->sync(err);
}

void bl_dev_student_refresh_cat(BlDeviceTrainer *tr) {
    const BlBackend *be = tr->be;
    const BlConfig *c = &tr->m->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            BlDevLinear *L = bl_dev_linear(tr, l, k);
            if (!L->out || L->r == 0) continue;
            float *arows = L->lora_a + (size_t)L->r0 * L->in;
            be->copy2d(L->lora_b + L->r0, L->rank, L->B, L->r, L->out, L->r);
            be->copy2d(arows, L->in, L->A, L->in, L->r, L->in);
            be->scale(arows, (size_t)L->r * L->in, L->scale);
        }
}
