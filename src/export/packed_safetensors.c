/* packed_safetensors.c - the packed ternary export (format in
 * packed_safetensors.h): 2-bit codes + scale of every block linear, the
 * token embedding / LM head in F16 or F32, the safetensors file, config.json
 * and the tokenizer files. */
#include "export/packed_safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/student_export.h"
#include "io/atomic_file.h"
#include "io/quants.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "ops/quant.h"

/* Hugging Face module names of the block linears */
static const char *const HF_LINEAR[BL_LIN_KINDS] = {
    [BL_LIN_Q] = "self_attn.q_proj",     [BL_LIN_K] = "self_attn.k_proj",
    [BL_LIN_V] = "self_attn.v_proj",     [BL_LIN_QKV] = "self_attn.qkv_proj",
    [BL_LIN_O] = "self_attn.o_proj",     [BL_LIN_GATE] = "mlp.gate_proj",
    [BL_LIN_UP] = "mlp.up_proj",         [BL_LIN_GATE_UP] = "mlp.gate_up_proj",
    [BL_LIN_DOWN] = "mlp.down_proj",
};

// ----------------------------------------------------------------------------
// the tensor list

typedef struct {
    char name[128];
    const char *dtype; /* "F32", "F16" or "U8" */
    uint64_t shape[2];
    int n_dims;        /* 0 (scalar), 1 or 2 */
    const void *data;
    size_t nbytes;
} OutTensor;

typedef struct {
    OutTensor *t;
    int n, cap;
} TensorList;

static OutTensor *add_tensor(TensorList *L, const char *dtype, const void *data, size_t nbytes,
                             int n_dims, uint64_t d0, uint64_t d1, BlError *err) {
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        OutTensor *p = realloc(L->t, (size_t)cap * sizeof *p);
        if (!p) return bl_fail(err, "out of memory"), NULL;
        L->t = p;
        L->cap = cap;
    }
    OutTensor *t = &L->t[L->n++];
    *t = (OutTensor){.dtype = dtype, .shape = {d0, d1}, .n_dims = n_dims, .data = data,
                     .nbytes = nbytes};
    return t;
}

static int add_f32(TensorList *L, const char *name, const float *data, int rows, int cols,
                   BlError *err) {
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    OutTensor *t = add_tensor(L, "F32", data, n * sizeof(float), cols ? 2 : 1, (uint64_t)rows,
                              (uint64_t)cols, err);
    if (!t) return -1;
    snprintf(t->name, sizeof t->name, "%s", name);
    return 0;
}

/* rows × cols values rounded to fp16 (nearest, ties to even) into half */
static int add_f16(TensorList *L, const char *name, const float *data, int rows, int cols,
                   uint16_t *half, BlError *err) {
    size_t n = (size_t)rows * (size_t)cols;
    for (size_t i = 0; i < n; i++) half[i] = bl_fp32_to_fp16(data[i]);
    OutTensor *t = add_tensor(L, "F16", half, n * sizeof *half, 2, (uint64_t)rows,
                              (uint64_t)cols, err);
    if (!t) return -1;
    snprintf(t->name, sizeof t->name, "%s", name);
    return 0;
}

/* The token embedding or LM head, F16 or F32 as asked. */
static int add_matrix(TensorList *f32, TensorList *f16, const char *name, const float *data,
                      int rows, int cols, uint16_t *half, BlError *err) {
    return half ? add_f16(f16, name, data, rows, cols, half, err)
                : add_f32(f32, name, data, rows, cols, err);
}

// ----------------------------------------------------------------------------
// ternary codes

/* HF row r of a q/k weight comes from row src of a llama GGUF, which stores
 * each head's rows interleaved for ggml's RoPE: (i, j) -> 2i + j. */
static size_t gguf_row(size_t r, size_t hd) {
    size_t h = r / hd, rem = r % hd, half = hd / 2;
    return h * hd + 2 * (rem % half) + rem / half;
}

/* code = t + 1, element j at bits 2·(j%4) of byte j/4, padding code 1 */
static void pack_row(unsigned char *dst, const int8_t *q, int in) {
    size_t nb = ((size_t)in + 3) / 4;
    memset(dst, 0, nb);
    for (size_t j = 0; j < nb * 4; j++) {
        unsigned code = j < (size_t)in ? (unsigned)(q[j] + 1) : 1u;
        dst[j / 4] |= (unsigned char)(code << (2 * (j % 4)));
    }
}

/* Packs layer l's linear `kind` into dst; *scale = the value of a +1 weight
 * (Weff at λ = 1 computes ±1/s in fp32, so codes · scale is exactly Weff). */
static void pack_linear(BlStudent *st, int l, BlLinearKind kind, float *scratch, int8_t *q,
                        unsigned char *dst, float *scale) {
    const BlConfig *c = &st->model->cfg;
    const BlLinear *w = &st->model->layers[l].lin[kind];
    bl_student_ternary(st, l, kind, q, scale, scratch);
    bool permuted = c->rope_interleaved && (kind == BL_LIN_Q || kind == BL_LIN_K);
    size_t row_bytes = ((size_t)w->in + 3) / 4, hd = (size_t)c->head_dim;
    for (size_t r = 0; r < (size_t)w->out; r++) {
        size_t src = permuted ? gguf_row(r, hd) : r;
        pack_row(dst + r * row_bytes, q + src * (size_t)w->in, w->in);
    }
}

typedef struct {
    TensorList f32, f16, u8; /* file order: F32, F16, then the U8 codes */
    unsigned char *packed;
    uint16_t *half;          /* the F16 embedding and LM head, or NULL */
    float *scales;
    cJSON *shapes; /* metadata "tensors": {name: [out, in]} */
} Packed;

static void packed_free(Packed *P) {
    free(P->f32.t);
    free(P->f16.t);
    free(P->u8.t);
    free(P->packed);
    free(P->half);
    free(P->scales);
    cJSON_Delete(P->shapes);
}

static int add_linear_tensors(Packed *P, BlStudent *st, int l, BlLinearKind k, size_t *at,
                              int *li, float *scratch, int8_t *q, BlError *err) {
    const BlLinear *w = &st->model->layers[l].lin[k];
    char name[96]; /* + ".scale" fits OutTensor.name */
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, HF_LINEAR[k]);
    size_t row_bytes = ((size_t)w->in + 3) / 4, nbytes = row_bytes * (size_t)w->out;
    pack_linear(st, l, k, scratch, q, P->packed + *at, &P->scales[*li]);
    OutTensor *t = add_tensor(&P->u8, "U8", P->packed + *at, nbytes, 2, (uint64_t)w->out,
                              (uint64_t)row_bytes, err);
    OutTensor *s = t ? add_tensor(&P->f32, "F32", &P->scales[*li], sizeof(float), 0, 0, 0, err)
                     : NULL;
    cJSON *shape = cJSON_CreateArray();
    if (!s || !shape) {
        cJSON_Delete(shape);
        return s ? bl_fail(err, "out of memory") : -1;
    }
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(s->name, sizeof s->name, "%s%s", name, BL_PACKED_SCALE_SUFFIX);
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(w->out));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(w->in));
    cJSON_AddItemToObject(P->shapes, name, shape);
    if (w->b) {
        snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, HF_LINEAR[k]);
        if (add_f32(&P->f32, name, w->b, w->out, 0, err)) return -1;
    }
    *at += nbytes;
    (*li)++;
    return 0;
}

/* Every tensor of the folder, in file order: F32 ones, F16 ones, then the
 * codes. half: the embedding and LM head in F16 (else F32). */
static int build_tensors(Packed *P, BlStudent *st, bool half, BlError *err) {
    const BlModel *m = st->model;
    const BlConfig *c = &m->cfg;
    size_t total = 0, widest = bl_student_max_linear(st);
    int n_lin = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            const BlLinear *w = &m->layers[l].lin[k];
            if (!w->w) continue;
            total += ((size_t)w->in + 3) / 4 * (size_t)w->out;
            n_lin++;
        }
    P->shapes = cJSON_CreateObject();
    P->packed = bl_malloc(total ? total : 1, err);
    P->scales = bl_calloc((size_t)n_lin + 1, sizeof(float), err);
    float *scratch = bl_malloc(widest * sizeof(float), err);
    int8_t *q = bl_malloc(widest, err);
    size_t embd = (size_t)c->vocab_size * (size_t)c->dim;
    if (half) P->half = bl_malloc((c->tied_embeddings ? 1 : 2) * embd * sizeof *P->half, err);
    int rc = 0;
    if (!P->shapes) rc = bl_fail(err, "out of memory");
    else if (!P->packed || !P->scales || !scratch || !q || (half && !P->half))
        rc = -1; /* err set by bl_malloc */
    if (rc == 0)
        rc = add_matrix(&P->f32, &P->f16, "model.embed_tokens.weight", m->tok_embd,
                        c->vocab_size, c->dim, P->half, err);
    if (rc == 0) rc = add_f32(&P->f32, "model.norm.weight", m->out_norm, c->dim, 0, err);
    if (rc == 0 && !c->tied_embeddings)
        rc = add_matrix(&P->f32, &P->f16, "lm_head.weight", m->lm_head, c->vocab_size, c->dim,
                        P->half ? P->half + embd : NULL, err);
    size_t at = 0;
    int li = 0;
    for (int l = 0; rc == 0 && l < c->n_layers; l++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        rc = add_f32(&P->f32, name, m->layers[l].attn_norm, c->dim, 0, err);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if (rc == 0) rc = add_f32(&P->f32, name, m->layers[l].ffn_norm, c->dim, 0, err);
        for (int k = 0; rc == 0 && k < BL_LIN_KINDS; k++)
            if (m->layers[l].lin[k].w)
                rc = add_linear_tensors(P, st, l, (BlLinearKind)k, &at, &li, scratch, q, err);
    }
    free(scratch);
    free(q);
    return rc;
}

// ----------------------------------------------------------------------------
// files

static int path_in(char *buf, size_t n, const char *dir, const char *name, BlError *err) {
    if ((size_t)snprintf(buf, n, "%s/%s", dir, name) >= n)
        return bl_fail(err, "%s/%s: path too long", dir, name);
    return 0;
}

static int write_text(const char *dir, const char *name, const char *text, BlError *err) {
    char path[4096];
    if (path_in(path, sizeof path, dir, name, err)) return -1;
    BlAtomicFile a;
    if (bl_atomic_open(&a, path, err)) return -1;
    bl_atomic_write(&a, text, strlen(text));
    bl_atomic_write(&a, "\n", 1);
    return bl_atomic_commit(&a, err);
}

static int write_json(const char *dir, const char *name, cJSON *root, BlError *err) {
    char *text = root ? cJSON_Print(root) : NULL;
    int rc = text ? write_text(dir, name, text, err) : bl_fail(err, "%s: out of memory", name);
    free(text);
    return rc;
}

static cJSON *tensor_entry(const OutTensor *t, uint64_t begin) {
    cJSON *e = cJSON_CreateObject(), *shape = cJSON_AddArrayToObject(e, "shape");
    cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddStringToObject(e, "dtype", t->dtype);
    for (int i = 0; shape && i < t->n_dims; i++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[i]));
    if (offs) {
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)begin));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(begin + t->nbytes)));
    }
    return e;
}

static char *safetensors_header(const Packed *P, BlError *err) {
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON *pk = cJSON_CreateObject();
    cJSON_AddNumberToObject(pk, "format_version", BL_PACKED_FORMAT_VERSION);
    cJSON *codes = cJSON_AddArrayToObject(pk, "codes");
    for (int v = -1; codes && v <= 1; v++) cJSON_AddItemToArray(codes, cJSON_CreateNumber(v));
    cJSON_AddStringToObject(pk, "bit_order", "lsb_first");
    cJSON_AddNumberToObject(pk, "row_padding", 4);
    cJSON_AddItemReferenceToObject(pk, "tensors", P->shapes);
    char *pk_text = cJSON_PrintUnformatted(pk);
    cJSON_Delete(pk);
    if (meta) cJSON_AddStringToObject(meta, "format", "pt");
    if (meta && pk_text) cJSON_AddStringToObject(meta, BL_PACKED_METADATA_KEY, pk_text);
    free(pk_text);
    uint64_t at = 0;
    const TensorList *lists[3] = {&P->f32, &P->f16, &P->u8};
    for (int li = 0; li < 3; li++)
        for (int i = 0; i < lists[li]->n; i++) {
            const OutTensor *t = &lists[li]->t[i];
            cJSON_AddItemToObject(h, t->name, tensor_entry(t, at));
            at += t->nbytes;
        }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) bl_fail(err, "out of memory (safetensors header)");
    return text;
}

static int write_safetensors(const Packed *P, const char *dir, BlError *err) {
    char path[4096];
    BlAtomicFile a;
    if (path_in(path, sizeof path, dir, "model.safetensors", err)) return -1;
    char *header = safetensors_header(P, err);
    if (!header || bl_atomic_open(&a, path, err)) {
        free(header);
        return -1;
    }
    /* the data starts 8-aligned; F32 tensors come first, then F16, then U8,
     * so every tensor is aligned to its element size */
    size_t hlen = strlen(header), padded = (hlen + 7) / 8 * 8;
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    bl_atomic_write(&a, len_le, 8);
    bl_atomic_write(&a, header, hlen);
    bl_atomic_write(&a, "       ", padded - hlen);
    free(header);
    const TensorList *lists[3] = {&P->f32, &P->f16, &P->u8};
    for (int li = 0; li < 3; li++)
        for (int i = 0; i < lists[li]->n; i++)
            bl_atomic_write(&a, lists[li]->t[i].data, lists[li]->t[i].nbytes);
    return bl_atomic_commit(&a, err);
}

/* The shortest decimal that reads back as the same float, so config.json
 * holds 1e-05 rather than 9.99999974737875e-06. */
static double float_json(float v) {
    char buf[32];
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return strtod(buf, NULL);
}

static cJSON *config_json(const BlStudent *st) {
    static const char *const classes[] = {
        [BL_ARCH_LLAMA] = "LlamaForCausalLM", [BL_ARCH_QWEN2] = "Qwen2ForCausalLM",
        [BL_ARCH_PHI3] = "Phi3ForCausalLM",
    };
    const BlModel *m = st->model;
    const BlConfig *c = &m->cfg;
    cJSON *root = cJSON_CreateObject(), *archs = cJSON_AddArrayToObject(root, "architectures");
    if (archs) cJSON_AddItemToArray(archs, cJSON_CreateString(classes[c->arch]));
    cJSON_AddStringToObject(root, "model_type", bl_arch_name(c->arch));
    cJSON_AddNumberToObject(root, "hidden_size", c->dim);
    cJSON_AddNumberToObject(root, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(root, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(root, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(root, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "max_position_embeddings", c->max_seq_len);
    cJSON_AddNumberToObject(root, "rope_theta", float_json(c->rope_theta));
    cJSON_AddNullToObject(root, "rope_scaling");
    cJSON_AddNumberToObject(root, "rms_norm_eps", float_json(c->norm_eps));
    cJSON_AddBoolToObject(root, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    cJSON_AddStringToObject(root, "torch_dtype", "float32");
    int bos = bl_tokenizer_bos_id(m->tokenizer), eos = bl_tokenizer_eos_id(m->tokenizer);
    if (bos >= 0) cJSON_AddNumberToObject(root, "bos_token_id", bos);
    if (eos >= 0) cJSON_AddNumberToObject(root, "eos_token_id", eos);
    cJSON *q = cJSON_AddObjectToObject(root, "quantization_config");
    cJSON_AddStringToObject(q, "quant_method", BL_PACKED_QUANT_METHOD);
    cJSON_AddNumberToObject(q, "format_version", BL_PACKED_FORMAT_VERSION);
    cJSON_AddNumberToObject(q, "bits", 2);
    cJSON_AddStringToObject(q, "packing", BL_PACKED_PACKING);
    cJSON_AddStringToObject(q, "weight_scale", "per_tensor");
    cJSON_AddNumberToObject(q, "act_bits", st->cfg.act_bits);
    cJSON_AddStringToObject(q, "act_quant", "per_token_absmax");
    cJSON_AddNumberToObject(q, "student_lambda", float_json(st->cfg.lambda));
    return root;
}

// ----------------------------------------------------------------------------
// tokenizer files

static int copy_file(const char *src, const char *dir, const char *name, BlError *err) {
    char path[4096];
    BlAtomicFile a;
    if (path_in(path, sizeof path, dir, name, err)) return -1;
    FILE *in = fopen(src, "rb");
    if (!in) return bl_fail(err, "%s: cannot open: %s", src, strerror(errno));
    if (bl_atomic_open(&a, path, err)) {
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) bl_atomic_write(&a, buf, n);
    bool bad = ferror(in);
    fclose(in);
    if (bad) {
        bl_atomic_abort(&a);
        return bl_fail(err, "%s: read error", src);
    }
    return bl_atomic_commit(&a, err);
}

/* A Hugging Face source keeps its own files; a GGUF source gets them written
 * from its loaded tokenizer and stop tokens. */
static int write_tokenizer(const BlModel *m, const char *dir, BlError *err) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json",
                                        "generation_config.json", "chat_template.jinja",
                                        "special_tokens_map.json"};
    struct stat sb;
    if (m->path && stat(m->path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char src[4096];
            if (path_in(src, sizeof src, m->path, files[i], err)) return -1;
            if (access(src, F_OK) != 0 && i > 0) continue;
            if (copy_file(src, dir, files[i], err)) return -1;
        }
        return 0;
    }
    if (bl_tokenizer_save_json(m->tokenizer, m->chat_template, dir, err)) return -1;
    cJSON *gc = cJSON_CreateObject(), *eos = cJSON_AddArrayToObject(gc, "eos_token_id");
    int bos = bl_tokenizer_bos_id(m->tokenizer);
    if (bos >= 0) cJSON_AddNumberToObject(gc, "bos_token_id", bos);
    for (int i = 0; eos && i < m->n_stop_tokens; i++)
        cJSON_AddItemToArray(eos, cJSON_CreateNumber(m->stop_tokens[i]));
    int rc = write_json(dir, "generation_config.json", gc, err);
    cJSON_Delete(gc);
    return rc;
}

// ----------------------------------------------------------------------------
// entry point

static int check_student(const BlStudent *st, BlError *err) {
    const BlConfig *c = &st->model->cfg;
    if (bl_student_export_check(st, "the packed safetensors format", err)) return -1;
    if (bl_actq_levels(st->cfg.act_bits) < 0)
        return bl_fail(err, "the student's activation width %d is not 4, 8 or 16", st->cfg.act_bits);
    if (c->rope_interleaved && (c->qkv_bias || c->fused_qkv))
        return bl_fail(err, "interleaved RoPE rows with q/k biases or a fused qkv cannot be "
                       "reordered to Hugging Face layout");
    return 0;
}

static int make_dir(const char *dir, BlError *err) {
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return S_ISDIR(sb.st_mode) ? 0 : bl_fail(err, "%s: exists and is not a folder", dir);
    if (mkdir(dir, 0777) != 0) return bl_fail(err, "%s: cannot create: %s", dir, strerror(errno));
    return 0;
}

bool bl_packed_embed_f16(BlEmbedStorage embed) {
    return embed != BL_EMBED_F32;
}

int bl_export_packed_safetensors(BlStudent *st, const char *out_dir, BlEmbedStorage embed,
                                 BlError *err) {
    if (check_student(st, err) || make_dir(out_dir, err)) return bl_fail_prefix(err, "packed export");
    Packed P = {0};
    int rc = build_tensors(&P, st, bl_packed_embed_f16(embed), err);
    if (rc == 0) rc = write_safetensors(&P, out_dir, err);
    packed_free(&P);
    cJSON *cfg = rc == 0 ? config_json(st) : NULL;
    if (rc == 0) rc = write_json(out_dir, "config.json", cfg, err);
    cJSON_Delete(cfg);
    if (rc == 0) rc = write_tokenizer(st->model, out_dir, err);
    return rc ? bl_fail_prefix(err, "packed export") : 0;
}
