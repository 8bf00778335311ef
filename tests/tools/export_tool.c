/* export_tool.c - test tool for tests/py/test_export_gguf.py: what bitlab's
 * student computes, to compare an exported file against.
 *
 *   export_tool weff MODEL CKPT OUT.safetensors
 *       Every block linear's Weff at λ = 1 (bl_bitlinear_weff of the student
 *       rebuilt from CKPT), F32, named as in GGUF (blk.N.attn_q.weight, in
 *       the model's own row order), plus NAME.scale: the scalar 1/s.
 *   export_tool logits MODEL CKPT|- IDS OUT
 *       Logits float32 [n, vocab] of the int32 ids in the raw file IDS: the
 *       student of CKPT at λ = 1 with its activation width (its training
 *       forward), or with "-" the model itself (the inference forward, which
 *       quantises activations for an exported ternary student).
 *   export_tool logits16 MODEL CKPT IDS OUT
 *       The same student with each linear's scale rounded to fp16 as a GGUF
 *       block stores it: the model's weights are replaced by
 *       sign(Weff)·fp16(1/s) and run as a student at λ = 0 without adapters
 *       (Weff = W) with the checkpoint's activation width, i.e. the training
 *       forward on exactly the exported values.
 * Prints "export_tool: <message>" and exits 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/quants.h"
#include "model/model.h"
#include "train/checkpoint.h"
#include "eval/student_eval.h"
#include "bitlinear.h"
#include "ops/quant.h"

static const char *const STEMS[BL_LIN_KINDS] = {
    "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_up", "ffn_down",
};

static int fail(const BlError *err) {
    fprintf(stderr, "export_tool: %s\n", err->msg);
    return 1;
}

/* tensors: name, data, element count, shape (ndim 0..2) */
typedef struct {
    char name[64];
    float *data;
    size_t n;
    int ndim, shape[2];
} Entry;

static int write_safetensors(const char *path, const Entry *e, int n) {
    cJSON *h = cJSON_CreateObject();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(h, e[i].name);
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON *sh = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber(e[i].shape[d]));
        cJSON *o = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        off += e[i].n * sizeof(float);
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    FILE *f = fopen(path, "wb");
    if (!f || !text) {
        free(text);
        if (f) fclose(f);
        return -1;
    }
    unsigned long long hn = strlen(text);
    fwrite(&hn, 8, 1, f);
    fwrite(text, 1, hn, f);
    for (int i = 0; i < n; i++) fwrite(e[i].data, sizeof(float), e[i].n, f);
    free(text);
    return fclose(f);
}

static int dump_weff(BlStudent *st, const char *out) {
    const BlConfig *c = &st->model->cfg;
    Entry *e = calloc((size_t)c->n_layers * BL_LIN_KINDS * 2, sizeof *e);
    int n = 0, rc = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlBitLinear L = bl_student_bitlinear(st, l, k);
            L.lambda = 1.0f;
            size_t cnt = (size_t)L.out * L.in;
            Entry *w = &e[n++], *s = &e[n++];
            snprintf(w->name, sizeof w->name, "blk.%d.%s.weight", l, STEMS[k]);
            snprintf(s->name, sizeof s->name, "blk.%d.%s.weight.scale", l, STEMS[k]);
            w->data = malloc(cnt * sizeof(float));
            s->data = malloc(cnt * sizeof(float)); /* scratch for W + ΔW, then the scale */
            bl_bitlinear_weff(w->data, &L);
            if (L.lora) bl_lora_merge(s->data, L.w, L.lora);
            else memcpy(s->data, L.w, cnt * sizeof(float));
            s->data[0] = 1.0f / bl_wq_scale(s->data, cnt);
            w->n = cnt, w->ndim = 2, w->shape[0] = L.out, w->shape[1] = L.in;
            s->n = 1, s->ndim = 0;
        }
    if (write_safetensors(out, e, n)) rc = 1, fprintf(stderr, "export_tool: cannot write %s\n", out);
    for (int i = 0; i < n; i++) free(e[i].data);
    free(e);
    return rc;
}

/* Replaces every block linear of st's model by its Weff at λ = 1 with the
 * scale rounded to fp16, and rebuilds st as a plain λ = 0 student of it. */
static int round_scales(BlModel *m, BlStudent *st) {
    const BlConfig *c = &m->cfg;
    int bits = st->cfg.act_bits;
    size_t max = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++)
            if (m->layers[l].lin[k].w && (size_t)m->layers[l].lin[k].out * m->layers[l].lin[k].in > max)
                max = (size_t)m->layers[l].lin[k].out * m->layers[l].lin[k].in;
    float *merged = malloc(max * sizeof(float));
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (!bl_student_has(st, l, k)) continue;
            BlBitLinear L = bl_student_bitlinear(st, l, k);
            size_t cnt = (size_t)L.out * L.in;
            if (L.lora) bl_lora_merge(merged, L.w, L.lora);
            else memcpy(merged, L.w, cnt * sizeof(float));
            float s = bl_wq_scale(merged, cnt);
            float d16 = bl_fp16_to_fp32(bl_fp32_to_fp16(1.0f / s));
            float *w = m->layers[l].lin[k].w;
            for (size_t i = 0; i < cnt; i++) {
                float v = merged[i] * s; /* the ternary rule of ops/quant.c */
                w[i] = v >= 0.5f ? d16 : v <= -0.5f ? -d16 : 0.0f;
            }
        }
    free(merged);
    bl_free_student(st);
    BlStudentConfig cfg = {.lambda = 0.0f, .act_bits = bits};
    BlError err = {{0}};
    if (bl_build_student(st, m, &cfg, &err)) return fail(&err);
    return 0;
}

static int logits(BlModel *m, BlStudent *st, const char *ids_path, const char *out) {
    FILE *f = fopen(ids_path, "rb");
    if (!f) return fprintf(stderr, "export_tool: cannot open %s\n", ids_path), 1;
    int ids[4096], n = (int)fread(ids, sizeof(int), 4096, f);
    fclose(f);
    float *lg = malloc((size_t)n * m->cfg.vocab_size * sizeof(float));
    BlError err = {{0}};
    if (st && st->cfg.lambda != 0.0f) st->cfg.lambda = 1.0f;
    BlStudentMode mode = st ? bl_student_mode(st) : (BlStudentMode){0};
    if (bl_eval_logits(bl_backend_cpu(), m, st, mode, ids, n, lg, &err)) {
        free(lg);
        return fail(&err);
    }
    f = fopen(out, "wb");
    int rc = !f || fwrite(lg, sizeof(float), (size_t)n * m->cfg.vocab_size, f) !=
                       (size_t)n * m->cfg.vocab_size;
    if (f) fclose(f);
    free(lg);
    return rc;
}

int main(int argc, char **argv) {
    bool lg = strncmp(argv[argc > 1 ? 1 : 0], "logits", 6) == 0;
    if (argc < 5 || (strcmp(argv[1], "weff") && strcmp(argv[1], "logits") && strcmp(argv[1], "logits16")) ||
        (lg && argc < 6)) {
        fprintf(stderr, "usage: export_tool weff MODEL CKPT OUT | logits MODEL CKPT|- IDS OUT | "
                        "logits16 MODEL CKPT IDS OUT\n");
        return 2;
    }
    BlError err = {{0}};
    BlModel *m = NULL;
    if (bl_model_load(&m, argv[2], &err)) return fail(&err);
    BlStudent st = {0};
    bool student = strcmp(argv[3], "-") != 0;
    if (student && bl_student_from_checkpoint(&st, m, argv[3], NULL, &err)) {
        bl_model_free(m);
        return fail(&err);
    }
    int rc = 0;
    if (strcmp(argv[1], "logits16") == 0) rc = student ? round_scales(m, &st) : 2;
    if (rc == 0)
        rc = strcmp(argv[1], "weff") == 0 ? dump_weff(&st, argv[4])
                                          : logits(m, student ? &st : NULL, argv[4], argv[5]);
    bl_free_student(&st);
    bl_model_free(m);
    return rc;
}
