/* export.c - format dispatch and the manifest of every export (see export.h). */
#include "export/export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/manifest.h"
#include "export/packed_safetensors.h"
#include "export/student_export.h"
#include "io/quants.h"

/* Hugging Face names of the linear kinds (the packed format's names) */
static const char *const HF_STEMS[BL_LIN_KINDS] = {
    [BL_LIN_Q] = "self_attn.q_proj",     [BL_LIN_K] = "self_attn.k_proj",
    [BL_LIN_V] = "self_attn.v_proj",     [BL_LIN_QKV] = "self_attn.qkv_proj",
    [BL_LIN_O] = "self_attn.o_proj",     [BL_LIN_GATE] = "mlp.gate_proj",
    [BL_LIN_UP] = "mlp.up_proj",         [BL_LIN_GATE_UP] = "mlp.gate_up_proj",
    [BL_LIN_DOWN] = "mlp.down_proj",
};

int bl_export_format(const char *name, const char *out, BlExportFormat *f, BlError *err) {
    if (name) {
        if (strcmp(name, "gguf") == 0) *f = BL_EXPORT_GGUF;
        else if (strcmp(name, "safetensors") == 0) *f = BL_EXPORT_SAFETENSORS;
        else return bl_fail(err, "export format \"%s\" is not gguf or safetensors", name);
        return 0;
    }
    size_t n = strlen(out);
    *f = n > 5 && strcmp(out + n - 5, ".gguf") == 0 ? BL_EXPORT_GGUF : BL_EXPORT_SAFETENSORS;
    return 0;
}

/* The packed folder's tensors as its header documents them: block linears
 * as 2-bit codes (+ an F32 NAME.scale), the embedding and LM head F16 or
 * F32 (embed), norms and biases F32. */
static int packed_tensors(const BlStudent *st, BlEmbedStorage embed, BlManifestTensor **out,
                          char (**names)[96], int *n, BlError *err) {
    const BlConfig *c = &st->model->cfg;
    const char *matrix = bl_packed_embed_f16(embed) ? "F16" : "F32";
    int cap = 3 + c->n_layers * (2 + 2 * BL_LIN_KINDS);
    BlManifestTensor *t = bl_calloc((size_t)cap, sizeof *t, err);
    char(*nm)[96] = t ? bl_calloc((size_t)cap, sizeof *nm, err) : NULL;
    if (!nm) {
        free(t);
        return -1;
    }
    int k = 0;
#define ADD(TYPE, BLOCK, ...)                                 \
    do {                                                      \
        snprintf(nm[k], sizeof nm[k], __VA_ARGS__);           \
        t[k] = (BlManifestTensor){nm[k], TYPE, BLOCK, BLOCK}; \
        k++;                                                  \
    } while (0)
    ADD(matrix, false, "model.embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        ADD("F32", false, "model.layers.%d.input_layernorm.weight", l);
        ADD("F32", false, "model.layers.%d.post_attention_layernorm.weight", l);
        for (int j = 0; j < BL_LIN_KINDS; j++) {
            const BlLinear *lin = &st->model->layers[l].lin[j];
            if (!lin->w) continue;
            ADD("ternary_2bit", true, "model.layers.%d.%s.weight", l, HF_STEMS[j]);
            if (lin->b) ADD("F32", false, "model.layers.%d.%s.bias", l, HF_STEMS[j]);
        }
    }
    ADD("F32", false, "model.norm.weight");
    if (!c->tied_embeddings) ADD(matrix, false, "lm_head.weight");
#undef ADD
    *out = t;
    *names = nm;
    *n = k;
    return 0;
}

static int gguf_manifest(BlStudent *st, const char *out, const BlExportRequest *req,
                         BlExportResult *res, BlError *err) {
    int n = res->gguf.n_tensors;
    BlManifestTensor *t = bl_calloc((size_t)n + 1, sizeof *t, err);
    if (!t) return -1;
    for (int i = 0; i < n; i++) {
        const BlExportTensor *e = &res->gguf.tensors[i];
        t[i] = (BlManifestTensor){e->name, bl_ggml_type_name(e->type), e->block_linear,
                                  e->block_linear};
    }
    int rc = bl_manifest_write(out, false, "gguf", st, req->run, t, n, &res->manifest_path, err);
    free(t);
    return rc;
}

static int export_student(BlStudent *st, const char *out, const BlExportRequest *req,
                          BlExportResult *res, BlError *err) {
    if (bl_export_format(req->format, out, &res->format, err)) return -1;
    if (res->format == BL_EXPORT_GGUF) {
        if (bl_export_gguf(st, out, &req->gguf, &res->gguf, err)) return -1;
        return gguf_manifest(st, out, req, res, err);
    }
    if (bl_student_export_check(st, "the packed safetensors format", err) ||
        bl_export_packed_safetensors(st, out, req->gguf.embed, err))
        return -1;
    BlManifestTensor *t;
    char(*names)[96];
    int n;
    if (packed_tensors(st, req->gguf.embed, &t, &names, &n, err)) return -1;
    int rc = bl_manifest_write(out, true, "safetensors", st, req->run, t, n, &res->manifest_path, err);
    free(t);
    free(names);
    return rc;
}

int bl_export_student(BlStudent *st, const char *out, const BlExportRequest *req,
                      BlExportResult *res, BlError *err) {
    memset(res, 0, sizeof *res);
    if (export_student(st, out, req, res, err) == 0) return 0;
    bl_export_result_free(res);
    return -1;
}

void bl_export_result_free(BlExportResult *res) {
    bl_export_summary_free(&res->gguf);
    free(res->manifest_path);
    res->manifest_path = NULL;
}
