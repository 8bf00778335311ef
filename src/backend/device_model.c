/* device_model.c - the host model's weights copied once into a backend's
 * memory (see device_model.h). */
#include "backend/device_model.h"

#include <stdlib.h>
#include <string.h>

static float *upload_vector(const BlBackend *be, const float *host, size_t n, BlError *err) {
    if (!host) return NULL;
    float *d = be->alloc(sizeof(float) * n, err);
    if (d && be->upload(d, host, sizeof(float) * n, err)) {
        be->free(d);
        return NULL;
    }
    return d;
}

/* Every weight pointer of m, with its size and kind, for building and freeing
 * alike: matrices go through weights_upload, vectors stay fp32. */
typedef struct {
    float **p;
    size_t n;
    bool matrix;
} Slot;

static int list_slots(BlModel *m, Slot *out, int cap) {
    const BlConfig *c = &m->cfg;
    size_t D = (size_t)c->dim;
    int n = 0;
#define ADD(ptr, count, is_matrix)                                 \
    do {                                                           \
        if (n < cap) out[n] = (Slot){&(ptr), (count), (is_matrix)}; \
        n++;                                                       \
    } while (0)
    ADD(m->tok_embd, (size_t)c->vocab_size * D, true);
    ADD(m->out_norm, D, false);
    if (m->lm_head != m->tok_embd) ADD(m->lm_head, (size_t)c->vocab_size * D, true);
    for (int l = 0; l < c->n_layers; l++) {
        BlLayer *L = &m->layers[l];
        ADD(L->attn_norm, D, false);
        ADD(L->ffn_norm, D, false);
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            BlLinear *lin = &L->lin[k];
            if (!lin->w) continue;
            ADD(lin->w, (size_t)lin->out * lin->in, true);
            if (lin->b) ADD(lin->b, (size_t)lin->out, false);
        }
    }
#undef ADD
    return n;
}

void bl_device_model_free(BlDeviceModel *dm) {
    if (dm->uploaded) {
        int n = list_slots(&dm->model, NULL, 0);
        Slot *slots = malloc(sizeof(Slot) * (size_t)n);
        if (slots) {
            list_slots(&dm->model, slots, n);
            for (int i = 0; i < n; i++) {
                if (!*slots[i].p) continue;
                if (slots[i].matrix) dm->be->weights_free(*slots[i].p);
                else dm->be->free(*slots[i].p);
            }
            free(slots);
        }
        free(dm->model.layers);
    }
    memset(dm, 0, sizeof *dm);
}

int bl_device_model_build(BlDeviceModel *dm, const BlModel *host, const BlBackend *be,
                          BlError *err) {
    memset(dm, 0, sizeof *dm);
    dm->be = be;
    dm->host = host;
    dm->model = *host;
    if (be == bl_backend_cpu()) return 0;
    dm->model.arena = NULL; /* the weights below are not one host arena */
    dm->model.arena_floats = 0;
    int nl = host->cfg.n_layers;
    dm->model.layers = bl_calloc((size_t)(nl > 0 ? nl : 1), sizeof(BlLayer), err);
    if (!dm->model.layers) return -1;
    memcpy(dm->model.layers, host->layers, sizeof(BlLayer) * (size_t)nl);
    dm->uploaded = true;
    int n = list_slots(&dm->model, NULL, 0);
    Slot *slots = bl_malloc(sizeof(Slot) * (size_t)n, err);
    if (!slots) {
        bl_device_model_free(dm);
        return -1;
    }
    list_slots(&dm->model, slots, n);
    /* every slot holds the host pointer until its upload replaces it; on a
     * failure the rest are cleared so that freeing touches only uploads */
    int rc = 0;
    for (int i = 0; i < n; i++) {
        float *src = *slots[i].p;
        float *dst = NULL;
        if (rc == 0 && src) {
            dst = slots[i].matrix ? be->weights_upload(src, slots[i].n, err)
                                  : upload_vector(be, src, slots[i].n, err);
            if (!dst) rc = -1;
        }
        *slots[i].p = dst;
    }
    free(slots);
    if (host->lm_head == host->tok_embd) dm->model.lm_head = dm->model.tok_embd;
    if (rc) {
        bl_device_model_free(dm);
        return bl_fail_prefix(err, "copying %s's weights to the %s backend",
                              host->name ? host->name : "the model", be->name);
    }
    return be->sync(err);
}
