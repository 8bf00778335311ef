/* load_gguf.c - loads a GGUF file: {arch}.* hyper-parameters, every weight
 * dequantized into the arena, the tokenizer.ggml.* tokenizer and
 * tokenizer.chat_template, and bitlab.act_bits of an exported ternary
 * student. llama.cpp's converter permutes q/k rows of
 * "llama" models for interleaved RoPE (and no other arch), so only those set
 * cfg.rope_interleaved. */
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/quants.h"
#include "model/load_internal.h"
#include "tokenizer/tokenizer.h"

// ----------------------------------------------------------------------------
// config

typedef struct {
    const BlGguf *g;
    const char *arch; /* general.architecture, prefix of the hyper-parameter keys */
} Meta;

/* "{arch}.<field>" as an int; dflt < 0 makes the key required. */
static int meta_int(const Meta *mt, const char *field, long long dflt, int *out, BlError *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", mt->arch, field);
    uint64_t v;
    int rc = dflt < 0 ? bl_gguf_get_u64(mt->g, key, &v, err)
                      : bl_gguf_get_u64_or(mt->g, key, (uint64_t)dflt, &v, err);
    if (rc != 0) return -1;
    if (v > INT_MAX) return bl_fail(err, "%s: %s = %llu is out of range", mt->g->path, key,
                                    (unsigned long long)v);
    *out = (int)v;
    return 0;
}

static int meta_float(const Meta *mt, const char *field, double dflt, int required, float *out,
                      BlError *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", mt->arch, field);
    double v;
    int rc = required ? bl_gguf_get_f64(mt->g, key, &v, err)
                      : bl_gguf_get_f64_or(mt->g, key, dflt, &v, err);
    *out = (float)v;
    return rc;
}

/* {arch}.vocab_size, else the length of the token list. */
static int meta_vocab(const Meta *mt, int *out, BlError *err) {
    if (meta_int(mt, "vocab_size", 0, out, err) != 0) return -1;
    if (*out > 0) return 0;
    const BlGgufKV *kv = bl_gguf_find(mt->g, "tokenizer.ggml.tokens");
    if (!kv || kv->type != BL_GGUF_ARRAY || kv->v.arr.n > INT_MAX)
        return bl_fail(err, "%s: neither %s.vocab_size nor the tokenizer.ggml.tokens list is present",
                       mt->g->path, mt->arch);
    *out = (int)kv->v.arr.n;
    return 0;
}

/* RoPE frequency scaling (Llama-3.1+ rope_freqs, Phi-3 long-context factors)
 * changes the function computed: refuse rather than ignore. */
static int check_rope_scaling(const Meta *mt, BlError *err) {
    static const char *const tensors[] = {"rope_freqs.weight", "rope_factors_long.weight",
                                          "rope_factors_short.weight"};
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++)
        if (bl_gguf_tensor(mt->g, tensors[i]))
            return bl_fail(err, "%s: tensor %s: RoPE frequency scaling is not supported",
                           mt->g->path, tensors[i]);
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", mt->arch);
    BlGgufStr s;
    if (!bl_gguf_find(mt->g, key)) return 0;
    if (bl_gguf_get_str(mt->g, key, &s, err) != 0) return -1;
    if (!(s.len == 4 && memcmp(s.ptr, "none", 4) == 0))
        return bl_fail(err, "%s: %s = \"%.*s\" is not supported (only none)", mt->g->path, key,
                       (int)(s.len < 32 ? s.len : 32), s.ptr);
    return 0;
}

/* A ternary student exported by bitlab (src/export/export_gguf.h) records
 * the activation width it was trained with; its forward must quantise every
 * block linear's input to that width (16: no quantisation). */
static int parse_student(BlConfig *c, const BlGguf *g, BlError *err) {
    uint64_t bits;
    if (!bl_gguf_find(g, "bitlab.act_bits")) return 0;
    if (bl_gguf_get_u64(g, "bitlab.act_bits", &bits, err) != 0) return -1;
    if (bits != 8 && bits != 4 && bits != 16)
        return bl_fail(err, "%s: bitlab.act_bits = %llu is not 4, 8 or 16", g->path,
                       (unsigned long long)bits);
    c->ternary_act_bits = bits == 16 ? 0 : (int)bits;
    return 0;
}

/* The sizes everything is allocated from, against the tensors the file
 * holds: block_count against the blk.N.* names, vocab_size and
 * embedding_length against token_embd.weight, the token list against
 * vocab_size. */
static int check_against_tensors(const BlConfig *c, const Meta *mt, BlError *err) {
    const BlGguf *g = mt->g;
    int max_blk = -1;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        int b = bl_block_index(g->tensors[i].name, "blk.");
        if (b > max_blk) max_blk = b;
    }
    char field[96];
    snprintf(field, sizeof field, "%s.block_count", mt->arch);
    if (bl_check_block_count(c->n_layers, max_blk, field, "blk.N.*", err) != 0)
        return bl_fail_prefix(err, "%s", g->path);
    const BlGgufTensor *e = bl_gguf_tensor(g, "token_embd.weight");
    if (!e) return bl_fail(err, "%s: missing tensor token_embd.weight", g->path);
    if (e->n_dims != 2 || e->ne[1] != (uint64_t)c->vocab_size || e->ne[0] != (uint64_t)c->dim)
        return bl_fail(err, "%s: vocab_size %d and %s.embedding_length %d do not match tensor "
                       "token_embd.weight (%" PRIu32 "-D, %llu rows of %llu)", g->path, c->vocab_size,
                       mt->arch, c->dim, e->n_dims, (unsigned long long)e->ne[1],
                       (unsigned long long)e->ne[0]);
    const BlGgufKV *toks = bl_gguf_find(g, "tokenizer.ggml.tokens");
    if (toks && toks->type == BL_GGUF_ARRAY && toks->v.arr.n > (uint64_t)c->vocab_size)
        return bl_fail(err, "%s: tokenizer.ggml.tokens has %llu tokens, more than vocab_size %d",
                       g->path, (unsigned long long)toks->v.arr.n, c->vocab_size);
    return 0;
}

int bl_config_from_gguf(BlConfig *c, const BlGguf *g, BlError *err) {
    BlGgufStr s;
    char arch[64];
    if (bl_gguf_get_str(g, "general.architecture", &s, err) != 0) return -1;
    snprintf(arch, sizeof arch, "%.*s", (int)(s.len < 63 ? s.len : 63), s.ptr);
    if (bl_arch_from_name(arch, &c->arch) != 0)
        return bl_fail(err, "%s: general.architecture \"%s\" is not supported (llama, mistral, "
                       "qwen2, phi3)", g->path, arch);
    Meta mt = {g, arch};
    int rope_dims = 0;
    if (meta_int(&mt, "block_count", -1, &c->n_layers, err) ||
        meta_int(&mt, "embedding_length", -1, &c->dim, err) ||
        meta_int(&mt, "feed_forward_length", -1, &c->hidden_dim, err) ||
        meta_int(&mt, "attention.head_count", -1, &c->n_heads, err) ||
        meta_int(&mt, "attention.head_count_kv", c->n_heads, &c->n_kv_heads, err) ||
        meta_int(&mt, "context_length", -1, &c->max_seq_len, err) ||
        meta_float(&mt, "rope.freq_base", 10000.0, 0, &c->rope_theta, err) ||
        meta_float(&mt, "attention.layer_norm_rms_epsilon", 0.0, 1, &c->norm_eps, err) ||
        meta_vocab(&mt, &c->vocab_size, err) || check_rope_scaling(&mt, err))
        return -1;
    if (c->n_heads == 0) return bl_fail(err, "%s: %s.attention.head_count is 0", g->path, arch);
    if (meta_int(&mt, "attention.key_length", c->dim / c->n_heads, &c->head_dim, err) ||
        meta_int(&mt, "rope.dimension_count", c->head_dim, &rope_dims, err))
        return -1;
    if (rope_dims != c->head_dim)
        return bl_fail(err, "%s: %s.rope.dimension_count = %d: partial rotary embeddings are not "
                       "supported (head_dim is %d)", g->path, arch, rope_dims, c->head_dim);
    c->rope_interleaved = c->arch == BL_ARCH_LLAMA;
    c->tied_embeddings = bl_gguf_tensor(g, "output.weight") == NULL;
    if (check_against_tensors(c, &mt, err) != 0) return -1;
    return parse_student(c, g, err);
}

// ----------------------------------------------------------------------------
// weights

/* 1-D tensors (norm weights, biases) are never quantised by llama.cpp's
 * converter or llama-quantize (it writes them as F32); a float type is
 * accepted, a block-quantised one is refused. */
static bool vector_type_ok(uint32_t type) {
    return type == BL_GGML_F32 || type == BL_GGML_F16 || type == BL_GGML_BF16;
}

/* Present, the expected shape and type: checked for every weight before the
 * arena is allocated (bl_model_plan), so s->dst may be NULL. */
static int check_slot(void *ctx, const BlWeightSlot *s, BlError *err) {
    const BlGguf *g = ctx;
    const BlGgufTensor *t = bl_gguf_tensor(g, s->name);
    if (!t) return bl_fail(err, "%s: missing tensor %s", g->path, s->name);
    /* ggml lists the contiguous dimension first; compare in row-major order */
    unsigned long long want[2] = {(unsigned long long)s->rows, (unsigned long long)s->cols};
    unsigned long long got[4];
    int want_dims = s->cols ? 2 : 1, got_dims = (int)t->n_dims;
    for (int i = 0; i < got_dims; i++) got[i] = t->ne[got_dims - 1 - i];
    int ok = got_dims == want_dims;
    for (int i = 0; ok && i < want_dims; i++) ok = got[i] == want[i];
    if (!ok) {
        char ws[64], gs[128];
        bl_shape_str(ws, sizeof ws, want, want_dims);
        bl_shape_str(gs, sizeof gs, got, got_dims);
        return bl_fail(err, "%s: tensor %s: expected shape %s, got %s", g->path, s->name, ws, gs);
    }
    if (!s->cols && !vector_type_ok(t->type))
        return bl_fail(err, "%s: tensor %s: type %s is not allowed for a 1-D tensor (norm weights "
                       "and biases must be F32, F16 or BF16; llama.cpp writes them as F32)", g->path,
                       s->name, bl_ggml_type_name(t->type));
    return 0;
}

static int load_slot(const BlGguf *g, const BlWeightSlot *s, BlError *err) {
    const BlGgufTensor *t = bl_gguf_tensor(g, s->name);
    if (bl_dequantize(t->type, t->data, s->dst, t->n_elements, err) != 0)
        return bl_fail_prefix(err, "%s: tensor %s", g->path, s->name);
    return 0;
}

static int load_weights(BlModel *m, const BlGguf *g, BlError *err) {
    BlWeightPlan plan;
    int rc = bl_model_plan(m, &plan, check_slot, (void *)g, err);
    if (rc != 0 && err && !strstr(err->msg, g->path)) bl_fail_prefix(err, "%s", g->path);
    for (int i = 0; rc == 0 && i < plan.n; i++) rc = load_slot(g, &plan.slots[i], err);
    bl_weight_plan_free(&plan);
    return rc;
}

// ----------------------------------------------------------------------------
// tokenizer, template, name

static int copy_optional_str(const BlGguf *g, const char *key, char **out, BlError *err) {
    const BlGgufKV *kv = bl_gguf_find(g, key);
    if (!kv) return 0;
    BlGgufStr s;
    if (bl_gguf_get_str(g, key, &s, err) != 0) return -1;
    *out = bl_gguf_strdup(s, err);
    return *out ? 0 : -1;
}

static int set_name(BlModel *m, const BlGguf *g, const char *path, BlError *err) {
    if (copy_optional_str(g, "general.name", &m->name, err) != 0) return -1;
    if (m->name) return 0;
    const char *base = strrchr(path, '/');
    m->name = strdup(base ? base + 1 : path);
    return m->name ? 0 : bl_fail(err, "out of memory");
}

int bl_load_gguf(BlModel *m, const char *path, BlError *err) {
    BlGguf *g = NULL;
    if (bl_gguf_open(&g, path, err) != 0) return -1;
    int rc = bl_config_from_gguf(&m->cfg, g, err);
    if (rc == 0) rc = load_weights(m, g, err);
    if (rc == 0 && (rc = bl_tokenizer_from_gguf(&m->tokenizer, g, err)) != 0)
        bl_fail_prefix(err, "%s", path);
    if (rc == 0) rc = copy_optional_str(g, "tokenizer.chat_template", &m->chat_template, err);
    if (rc == 0) rc = set_name(m, g, path, err);
    if (rc == 0) bl_model_add_default_stop_tokens(m);
    bl_gguf_close(g);
    return rc;
}
