/* export_gguf.c - the student as GGUF (see export_gguf.h): metadata, then
 * every tensor in llama.cpp's names, block linears ternary. */
#include "export/export_gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export/gguf_vocab.h"
#include "export/student_export.h"
#include "io/gguf.h"
#include "io/gguf_write.h"
#include "io/quantize.h"
#include "io/quants.h"

/* llama.cpp's tensor name stems of the linear kinds (Phi-3's fused gate_up
 * is its ffn_up, twice as tall), in model.h order */
static const char *const STEMS[BL_LIN_KINDS] = {
    [BL_LIN_Q] = "attn_q",      [BL_LIN_K] = "attn_k",     [BL_LIN_V] = "attn_v",
    [BL_LIN_QKV] = "attn_qkv",  [BL_LIN_O] = "attn_output", [BL_LIN_GATE] = "ffn_gate",
    [BL_LIN_UP] = "ffn_up",     [BL_LIN_GATE_UP] = "ffn_up", [BL_LIN_DOWN] = "ffn_down",
};

typedef struct {
    BlStudent *st;
    const BlModel *m;
    const BlConfig *c;
    const BlGgufExportOptions *o;
    BlGgufWriter *w;
    BlGguf *src;          /* the source file when the model came from a GGUF */
    BlExportSummary sum;
    int cap_tensors;
    int8_t *codes, *perm; /* [max out·in] */
    float *scratch;       /* [max out·in] */
} Ctx;

uint32_t bl_export_linear_type(int in, uint32_t ternary_type) {
    if (in % 256 == 0) return ternary_type ? ternary_type : BL_GGML_TQ2_0;
    if (in % 32 == 0) return BL_GGML_Q4_0;
    return BL_GGML_F16;
}

void bl_export_summary_free(BlExportSummary *sum) {
    free(sum->tensors);
    memset(sum, 0, sizeof *sum);
}

// ----------------------------------------------------------------------------
// tensors

static int record(Ctx *x, const char *name, uint32_t type, bool block_linear, BlError *err) {
    if (x->sum.n_tensors == x->cap_tensors) {
        int cap = x->cap_tensors ? 2 * x->cap_tensors : 64;
        BlExportTensor *t = realloc(x->sum.tensors, (size_t)cap * sizeof *t);
        if (!t) return bl_fail(err, "out of memory");
        x->sum.tensors = t;
        x->cap_tensors = cap;
    }
    BlExportTensor *t = &x->sum.tensors[x->sum.n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->block_linear = block_linear;
    return 0;
}

/* floats [rows, cols] (cols == 0: a vector of rows) as F32 or F16 */
static int add_floats(Ctx *x, const char *name, const float *v, int rows, int cols, uint32_t type,
                      BlError *err) {
    uint64_t ne[2] = {(uint64_t)(cols ? cols : rows), (uint64_t)rows};
    uint64_t n = (uint64_t)rows * (uint64_t)(cols ? cols : 1);
    size_t bytes = bl_ggml_row_bytes(type, n);
    void *buf = bl_malloc(bytes, err);
    if (!buf || bl_quantize_float(type, v, n, buf, err)) {
        free(buf);
        return bl_fail_prefix(err, "tensor %s", name);
    }
    if (bl_gguf_add_tensor(x->w, name, type, cols ? 2 : 1, ne, buf, bytes, true, err)) return -1;
    return record(x, name, type, false, err);
}

/* token_embd / output: the source GGUF's own bytes (keep), else F32 / F16 */
static int add_embedding(Ctx *x, const char *name, const float *v, BlError *err) {
    const BlConfig *c = x->c;
    if (x->o->embed == BL_EMBED_KEEP && x->src) {
        const BlGgufTensor *t = bl_gguf_tensor(x->src, name);
        if (t && t->n_dims == 2 && t->ne[0] == (uint64_t)c->dim && t->ne[1] == (uint64_t)c->vocab_size) {
            if (bl_gguf_add_tensor(x->w, name, t->type, 2, t->ne, t->data, t->nbytes, false, err))
                return -1;
            return record(x, name, t->type, false, err);
        }
        /* tied embeddings in the source: output.weight is absent, keep it so */
    }
    uint32_t type = x->o->embed == BL_EMBED_F16 ? BL_GGML_F16 : BL_GGML_F32;
    return add_floats(x, name, v, c->vocab_size, c->dim, type, err);
}

/* convert_hf_to_gguf's LlamaModel.permute: within each head, rotate-half
 * row order (i, i + hd/2) becomes interleaved (2i, 2i+1) */
static void permute_rows(int8_t *dst, const int8_t *src, int rows, int cols, int n_head) {
    int hd = rows / n_head, half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + (size_t)(h * hd + 2 * i + j) * cols,
                       src + (size_t)(h * hd + j * half + i) * cols, (size_t)cols);
}

static int add_linear(Ctx *x, int l, BlLinearKind kind, BlError *err) {
    const BlLinear *lin = &x->m->layers[l].lin[kind];
    char name[64];
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, STEMS[kind]);
    float scale;
    bl_student_ternary(x->st, l, kind, x->codes, &scale, x->scratch);
    const int8_t *codes = x->codes;
    bool permute = x->c->arch == BL_ARCH_LLAMA && !x->c->rope_interleaved &&
                   (kind == BL_LIN_Q || kind == BL_LIN_K);
    if (permute) {
        permute_rows(x->perm, x->codes, lin->out, lin->in,
                     kind == BL_LIN_Q ? x->c->n_heads : x->c->n_kv_heads);
        codes = x->perm;
    }
    uint32_t type = bl_export_linear_type(lin->in, x->o->ternary_type);
    uint64_t n = (uint64_t)lin->out * lin->in, ne[2] = {(uint64_t)lin->in, (uint64_t)lin->out};
    size_t bytes = bl_ggml_row_bytes(type, n);
    void *buf = bl_malloc(bytes, err);
    if (!buf || bl_quantize_ternary(type, codes, scale, n, buf, err)) {
        free(buf);
        return bl_fail_prefix(err, "tensor %s", name);
    }
    if (type != BL_GGML_F32) {
        double d16 = bl_fp16_to_fp32(bl_fp32_to_fp16(scale));
        double rel = fabs(d16 - scale) / scale;
        if (rel > x->sum.max_scale_rel_err) x->sum.max_scale_rel_err = rel;
    }
    if (bl_gguf_add_tensor(x->w, name, type, 2, ne, buf, bytes, true, err) ||
        record(x, name, type, true, err))
        return -1;
    if (lin->b) {
        snprintf(name, sizeof name, "blk.%d.%s.bias", l, STEMS[kind]);
        /* the bias rows follow the weight rows; only llama permutes, and it has no bias */
        if (add_floats(x, name, lin->b, lin->out, 0, BL_GGML_F32, err)) return -1;
    }
    return 0;
}

static int add_tensors(Ctx *x, BlError *err) {
    const BlConfig *c = x->c;
    const BlModel *m = x->m;
    char name[64];
    if (add_embedding(x, "token_embd.weight", m->tok_embd, err)) return -1;
    for (int l = 0; l < c->n_layers; l++) {
        const BlLayer *y = &m->layers[l];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if (add_floats(x, name, y->attn_norm, c->dim, 0, BL_GGML_F32, err)) return -1;
        for (int k = 0; k < BL_LIN_KINDS; k++) {
            if (k == BL_LIN_GATE) { /* the MLP half starts with its norm */
                snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
                if (add_floats(x, name, y->ffn_norm, c->dim, 0, BL_GGML_F32, err)) return -1;
            }
            if (y->lin[k].w && add_linear(x, l, (BlLinearKind)k, err)) return -1;
        }
    }
    if (add_floats(x, "output_norm.weight", m->out_norm, c->dim, 0, BL_GGML_F32, err)) return -1;
    if (!c->tied_embeddings && add_embedding(x, "output.weight", m->lm_head, err)) return -1;
    return 0;
}

// ----------------------------------------------------------------------------
// metadata

static int set_arch_u32(Ctx *x, const char *field, int v, BlError *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", bl_arch_name(x->c->arch), field);
    return bl_gguf_set_u32(x->w, key, (uint32_t)v, err);
}

static int set_arch_f32(Ctx *x, const char *field, float v, BlError *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", bl_arch_name(x->c->arch), field);
    return bl_gguf_set_f32(x->w, key, v, err);
}

/* the general.* keys of a GGUF source that still describe the export */
static int copy_general(Ctx *x, BlError *err) {
    static const char *const SKIP[] = {"general.architecture", "general.alignment",
                                       "general.file_type", "general.quantization_version"};
    for (uint64_t i = 0; x->src && i < x->src->n_kv; i++) {
        const BlGgufKV *kv = &x->src->kv[i];
        if (strncmp(kv->key, "general.", 8) != 0) continue;
        bool skip = false;
        for (size_t s = 0; s < sizeof SKIP / sizeof SKIP[0]; s++) skip |= strcmp(kv->key, SKIP[s]) == 0;
        if (!skip && bl_gguf_copy_kv(x->w, kv, err)) return -1;
    }
    if (!bl_gguf_writer_has(x->w, "general.name") && x->m->name &&
        bl_gguf_set_str(x->w, "general.name", x->m->name, err))
        return -1;
    return 0;
}

static int set_metadata(Ctx *x, BlError *err) {
    const BlConfig *c = x->c;
    if (bl_gguf_set_str(x->w, "general.architecture", bl_arch_name(c->arch), err) ||
        copy_general(x, err) ||
        set_arch_u32(x, "context_length", c->max_seq_len, err) ||
        set_arch_u32(x, "embedding_length", c->dim, err) ||
        set_arch_u32(x, "block_count", c->n_layers, err) ||
        set_arch_u32(x, "feed_forward_length", c->hidden_dim, err) ||
        set_arch_u32(x, "attention.head_count", c->n_heads, err) ||
        set_arch_u32(x, "attention.head_count_kv", c->n_kv_heads, err) ||
        set_arch_f32(x, "rope.freq_base", c->rope_theta, err) ||
        set_arch_u32(x, "rope.dimension_count", c->head_dim, err) ||
        set_arch_f32(x, "attention.layer_norm_rms_epsilon", c->norm_eps, err) ||
        set_arch_u32(x, "vocab_size", c->vocab_size, err))
        return -1;
    if (c->head_dim * c->n_heads != c->dim &&
        (set_arch_u32(x, "attention.key_length", c->head_dim, err) ||
         set_arch_u32(x, "attention.value_length", c->head_dim, err)))
        return -1;
    if (x->src ? bl_gguf_vocab_copy(x->w, x->src, err) : bl_gguf_vocab_from_hf(x->w, x->m, err))
        return -1;
    return bl_gguf_set_bool(x->w, "bitlab.student", true, err) ||
           bl_gguf_set_u32(x->w, "bitlab.act_bits", (uint32_t)x->st->cfg.act_bits, err) ||
           bl_gguf_set_str(x->w, "bitlab.version", BITLAB_VERSION, err);
}

// ----------------------------------------------------------------------------

int bl_export_gguf(BlStudent *st, const char *out, const BlGgufExportOptions *o,
                   BlExportSummary *sum, BlError *err) {
    if (sum) memset(sum, 0, sizeof *sum);
    if (bl_student_export_check(st, "GGUF", err)) return -1;
    if (o->ternary_type && o->ternary_type != BL_GGML_TQ2_0 && o->ternary_type != BL_GGML_TQ1_0)
        return bl_fail(err, "ternary type %u is not TQ2_0 or TQ1_0", o->ternary_type);
    Ctx x = {.st = st, .m = st->model, .c = &st->model->cfg, .o = o};
    struct stat sb;
    int rc = 0;
    if (stat(x.m->path, &sb) == 0 && S_ISREG(sb.st_mode) && bl_gguf_open(&x.src, x.m->path, err))
        rc = bl_fail_prefix(err, "source model");
    size_t maxw = bl_student_max_linear(st);
    if (rc == 0 && (!(x.w = bl_gguf_writer_new(err)) || !(x.codes = bl_malloc(maxw, err)) ||
                    !(x.perm = bl_malloc(maxw, err)) ||
                    !(x.scratch = bl_malloc(maxw * sizeof(float), err))))
        rc = -1;
    if (rc == 0) rc = set_metadata(&x, err);
    if (rc == 0) rc = add_tensors(&x, err);
    free(x.codes);
    free(x.perm);
    free(x.scratch);
    x.codes = x.perm = NULL;
    x.scratch = NULL;
    if (rc == 0) rc = bl_gguf_write(x.w, out, err);
    bl_gguf_writer_free(x.w);
    bl_gguf_close(x.src);
    if (rc == 0 && sum) *sum = x.sum;
    else bl_export_summary_free(&x.sum);
    return rc;
}
