/* model_dump.c - test tool: loads a model with bitlab and writes its config
 * and every weight (canonical GGUF-style names, fp32) as a safetensors file,
 * config in __metadata__, so Python tests can compare against numpy.
 *
 *   model_dump MODEL OUT.safetensors
 *
 * Exit 0 on success; on a load error prints "model_dump: <message>" to
 * stderr and exits 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* GGUF stems of the linear kinds, in model.h order. */
static const char *const STEMS[BL_LIN_KINDS] = {
    "attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output",
    "ffn_gate", "ffn_up", "ffn_up", "ffn_down",
};

typedef struct {
    char name[64];
    const float *data;
    int rows, cols; /* cols == 0: vector */
} Entry;

typedef struct {
    Entry *e;
    int n;
} Entries;

static void add(Entries *es, const char *name, const float *data, int rows, int cols) {
    Entry *e = &es->e[es->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->data = data;
    e->rows = rows;
    e->cols = cols;
}

static void collect(Entries *es, const BlModel *m) {
    const BlConfig *c = &m->cfg;
    char name[64];
    add(es, "token_embd.weight", m->tok_embd, c->vocab_size, c->dim);
    add(es, "output_norm.weight", m->out_norm, c->dim, 0);
    if (!c->tied_embeddings) add(es, "output.weight", m->lm_head, c->vocab_size, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        const BlLayer *y = &m->layers[l];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        add(es, name, y->attn_norm, c->dim, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        add(es, name, y->ffn_norm, c->dim, 0);
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *lin = &y->lin[k];
            if (!lin->w) continue;
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, STEMS[k]);
            add(es, name, lin->w, lin->out, lin->in);
            if (!lin->b) continue;
            snprintf(name, sizeof name, "blk.%d.%s.bias", l, STEMS[k]);
            add(es, name, lin->b, lin->out, 0);
        }
    }
}

static void meta_int(cJSON *meta, const char *key, long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    cJSON_AddStringToObject(meta, key, buf);
}

static void meta_float(cJSON *meta, const char *key, float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", v);
    cJSON_AddStringToObject(meta, key, buf);
}

static cJSON *metadata(const BlModel *m) {
    const BlConfig *c = &m->cfg;
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "arch", bl_arch_name(c->arch));
    meta_int(meta, "dim", c->dim);
    meta_int(meta, "n_layers", c->n_layers);
    meta_int(meta, "n_heads", c->n_heads);
    meta_int(meta, "n_kv_heads", c->n_kv_heads);
    meta_int(meta, "head_dim", c->head_dim);
    meta_int(meta, "hidden_dim", c->hidden_dim);
    meta_int(meta, "vocab_size", c->vocab_size);
    meta_int(meta, "max_seq_len", c->max_seq_len);
    meta_float(meta, "rope_theta", c->rope_theta);
    meta_float(meta, "norm_eps", c->norm_eps);
    meta_int(meta, "tied_embeddings", c->tied_embeddings);
    meta_int(meta, "rope_interleaved", c->rope_interleaved);
    meta_int(meta, "qkv_bias", c->qkv_bias);
    meta_int(meta, "fused_qkv", c->fused_qkv);
    meta_int(meta, "fused_gate_up", c->fused_gate_up);
    meta_int(meta, "param_count", bl_config_param_count(c));
    meta_int(meta, "weight_bytes", (long long)bl_model_weight_bytes(m));
    meta_int(meta, "tokenizer_vocab", bl_tokenizer_vocab_size(m->tokenizer));
    cJSON_AddStringToObject(meta, "name", m->name ? m->name : "");
    cJSON_AddStringToObject(meta, "chat_template", m->chat_template ? m->chat_template : "");
    char stops[128] = "";
    for (int i = 0; i < m->n_stop_tokens; i++) {
        size_t at = strlen(stops);
        snprintf(stops + at, sizeof stops - at, "%s%d", i ? "," : "", m->stop_tokens[i]);
    }
    cJSON_AddStringToObject(meta, "stop_tokens", stops);
    return meta;
}

static char *header_json(const BlModel *m, const Entries *es) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "__metadata__", metadata(m));
    size_t off = 0;
    for (int i = 0; i < es->n; i++) {
        const Entry *e = &es->e[i];
        size_t n = (size_t)e->rows * (size_t)(e->cols ? e->cols : 1);
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", "F32");
        double shape[2] = {e->rows, e->cols}, offs[2] = {(double)off, (double)(off + 4 * n)};
        cJSON_AddItemToObject(t, "shape", cJSON_CreateDoubleArray(shape, e->cols ? 2 : 1));
        cJSON_AddItemToObject(t, "data_offsets", cJSON_CreateDoubleArray(offs, 2));
        off += 4 * n;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static int write_dump(const BlModel *m, const Entries *es, const char *path) {
    char *hdr = header_json(m, es);
    FILE *f = fopen(path, "wb");
    if (!hdr || !f) {
        free(hdr);
        if (f) fclose(f);
        return -1;
    }
    uint64_t len = strlen(hdr);
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(len >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, len, f) == len;
    for (int i = 0; ok && i < es->n; i++) {
        size_t n = (size_t)es->e[i].rows * (size_t)(es->e[i].cols ? es->e[i].cols : 1);
        ok = fwrite(es->e[i].data, sizeof(float), n, f) == n;
    }
    free(hdr);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: model_dump MODEL OUT.safetensors\n");
        return 2;
    }
    BlError err = {{0}};
    BlModel *m = NULL;
    if (bl_model_load(&m, argv[1], &err) != 0) {
        fprintf(stderr, "model_dump: %s\n", err.msg);
        return 1;
    }
    Entries es = {calloc(3 + 14 * (size_t)m->cfg.n_layers, sizeof(Entry)), 0};
    int rc = es.e ? 0 : -1;
    if (rc == 0) {
        collect(&es, m);
        rc = write_dump(m, &es, argv[2]);
    }
    if (rc != 0) fprintf(stderr, "model_dump: cannot write %s\n", argv[2]);
    free(es.e);
    bl_model_free(m);
    return rc ? 1 : 0;
}
