/* model.c - bl_model_load's format dispatch and everything both loaders
 * share: config validation, the one-arena weight layout with its name table,
 * stop tokens, and freeing. */
#include "model/model.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/load_internal.h"
#include "tokenizer/tokenizer.h"

// ----------------------------------------------------------------------------
// names

/* Per-layer linears: canonical (GGUF) and HF name stems. Phi-3's fused
 * gate_up is GGUF's ffn_up, twice as tall. */
static const struct { const char *kind, *gguf, *hf; } LINEARS[BL_LIN_KINDS] = {
    [BL_LIN_Q] = {"q", "attn_q", "self_attn.q_proj"},
    [BL_LIN_K] = {"k", "attn_k", "self_attn.k_proj"},
    [BL_LIN_V] = {"v", "attn_v", "self_attn.v_proj"},
    [BL_LIN_QKV] = {"qkv", "attn_qkv", "self_attn.qkv_proj"},
    [BL_LIN_O] = {"o", "attn_output", "self_attn.o_proj"},
    [BL_LIN_GATE] = {"gate", "ffn_gate", "mlp.gate_proj"},
    [BL_LIN_UP] = {"up", "ffn_up", "mlp.up_proj"},
    [BL_LIN_GATE_UP] = {"gate_up", "ffn_up", "mlp.gate_up_proj"},
    [BL_LIN_DOWN] = {"down", "ffn_down", "mlp.down_proj"},
};

const char *bl_linear_kind_name(BlLinearKind k) {
    return (unsigned)k < BL_LIN_KINDS ? LINEARS[k].kind : "unknown";
}

// ----------------------------------------------------------------------------
// config checks

static int check_positive(const char *field, long long v, BlError *err) {
    if (v <= 0 || v > INT_MAX)
        return bl_fail(err, "%s = %lld is out of range", field, v);
    return 0;
}

int bl_config_check(BlConfig *c, BlError *err) {
    if (check_positive("dim", c->dim, err) || check_positive("n_layers", c->n_layers, err) ||
        check_positive("n_heads", c->n_heads, err) ||
        check_positive("n_kv_heads", c->n_kv_heads, err) ||
        check_positive("head_dim", c->head_dim, err) ||
        check_positive("hidden_dim", c->hidden_dim, err) ||
        check_positive("vocab_size", c->vocab_size, err) ||
        check_positive("max_seq_len", c->max_seq_len, err))
        return -1;
    if (c->n_heads % c->n_kv_heads != 0)
        return bl_fail(err, "n_kv_heads = %d does not divide n_heads = %d", c->n_kv_heads,
                       c->n_heads);
    if (c->head_dim % 2 != 0) return bl_fail(err, "head_dim = %d is odd (RoPE needs pairs)", c->head_dim);
    if (check_positive("n_heads * head_dim", (long long)c->n_heads * c->head_dim, err) ||
        check_positive("2 * hidden_dim", 2LL * c->hidden_dim, err) ||
        check_positive("(n_heads + 2 * n_kv_heads) * head_dim",
                       (long long)(c->n_heads + 2LL * c->n_kv_heads) * c->head_dim, err))
        return -1;
    if (!(c->norm_eps > 0.0f)) return bl_fail(err, "norm_eps = %g must be positive", c->norm_eps);
    if (!(c->rope_theta > 0.0f)) return bl_fail(err, "rope_theta = %g must be positive", c->rope_theta);
    c->qkv_bias = c->arch == BL_ARCH_QWEN2;
    c->fused_qkv = c->fused_gate_up = c->arch == BL_ARCH_PHI3;
    return 0;
}

// ----------------------------------------------------------------------------
// weight plan: every tensor of the arch, its names, shape and arena slot

typedef struct {
    BlWeightPlan *plan;
    size_t used;   /* floats laid out so far */
    float *arena;  /* NULL while only counting */
} Layout;

static float *add_slot(Layout *L, const char *name, const char *hf_name, int rows, int cols) {
    float *dst = L->arena ? L->arena + L->used : NULL;
    L->used += (size_t)rows * (size_t)(cols ? cols : 1);
    if (L->plan->slots) {
        BlWeightSlot *s = &L->plan->slots[L->plan->n++];
        snprintf(s->name, sizeof s->name, "%s", name);
        snprintf(s->hf_name, sizeof s->hf_name, "%s", hf_name);
        s->dst = dst;
        s->rows = rows;
        s->cols = cols;
    }
    return dst;
}

static void add_linear(Layout *L, BlLinear *lin, BlLinearKind k, int l, int out, int in,
                       int bias) {
    char name[64], hf[96];
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, LINEARS[k].gguf);
    snprintf(hf, sizeof hf, "model.layers.%d.%s.weight", l, LINEARS[k].hf);
    lin->w = add_slot(L, name, hf, out, in);
    lin->out = out;
    lin->in = in;
    if (bias) {
        snprintf(name, sizeof name, "blk.%d.%s.bias", l, LINEARS[k].gguf);
        snprintf(hf, sizeof hf, "model.layers.%d.%s.bias", l, LINEARS[k].hf);
        lin->b = add_slot(L, name, hf, out, 0);
    }
}

static void add_layer(Layout *L, const BlConfig *c, BlLayer *y, int l) {
    char name[64], hf[96];
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
    snprintf(hf, sizeof hf, "model.layers.%d.input_layernorm.weight", l);
    y->attn_norm = add_slot(L, name, hf, c->dim, 0);
    if (c->fused_qkv) {
        add_linear(L, &y->lin[BL_LIN_QKV], BL_LIN_QKV, l, q + 2 * kv, c->dim, 0);
    } else {
        add_linear(L, &y->lin[BL_LIN_Q], BL_LIN_Q, l, q, c->dim, c->qkv_bias);
        add_linear(L, &y->lin[BL_LIN_K], BL_LIN_K, l, kv, c->dim, c->qkv_bias);
        add_linear(L, &y->lin[BL_LIN_V], BL_LIN_V, l, kv, c->dim, c->qkv_bias);
    }
    add_linear(L, &y->lin[BL_LIN_O], BL_LIN_O, l, c->dim, q, 0);
    snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
    snprintf(hf, sizeof hf, "model.layers.%d.post_attention_layernorm.weight", l);
    y->ffn_norm = add_slot(L, name, hf, c->dim, 0);
    if (c->fused_gate_up) {
        add_linear(L, &y->lin[BL_LIN_GATE_UP], BL_LIN_GATE_UP, l, 2 * c->hidden_dim, c->dim, 0);
    } else {
        add_linear(L, &y->lin[BL_LIN_GATE], BL_LIN_GATE, l, c->hidden_dim, c->dim, 0);
        add_linear(L, &y->lin[BL_LIN_UP], BL_LIN_UP, l, c->hidden_dim, c->dim, 0);
    }
    add_linear(L, &y->lin[BL_LIN_DOWN], BL_LIN_DOWN, l, c->dim, c->hidden_dim, 0);
}

/* One pass lays out (or, with arena == NULL, only counts) every weight. */
static void layout(Layout *L, BlModel *m) {
    const BlConfig *c = &m->cfg;
    m->tok_embd = add_slot(L, "token_embd.weight", "model.embed_tokens.weight", c->vocab_size, c->dim);
    m->out_norm = add_slot(L, "output_norm.weight", "model.norm.weight", c->dim, 0);
    m->lm_head = c->tied_embeddings ? m->tok_embd
                                    : add_slot(L, "output.weight", "lm_head.weight", c->vocab_size, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        memset(&m->layers[l], 0, sizeof m->layers[l]);
        add_layer(L, c, &m->layers[l], l);
    }
}

int bl_model_plan(BlModel *m, BlWeightPlan *plan, BlSlotCheck check, void *ctx, BlError *err) {
    memset(plan, 0, sizeof *plan);
    if (bl_config_check(&m->cfg, err) != 0) return -1;
    m->layers = bl_calloc((size_t)m->cfg.n_layers, sizeof *m->layers, err);
    if (!m->layers) return -1;
    /* count first: 3 + 13 per layer is an upper bound on the slots */
    Layout L = {plan, 0, NULL};
    layout(&L, m);
    if (L.used > SIZE_MAX / sizeof(float))
        return bl_fail(err, "the model's %zu weights overflow the address space", L.used);
    plan->slots = bl_calloc(3 + 13 * (size_t)m->cfg.n_layers, sizeof *plan->slots, err);
    if (!plan->slots) return -1;
    /* list the slots (dst NULL) and let the loader check each against its
     * file before the arena, sized from the config, is reserved */
    L = (Layout){plan, 0, NULL};
    layout(&L, m);
    for (int i = 0; check && i < plan->n; i++)
        if (check(ctx, &plan->slots[i], err) != 0) return -1;
    m->arena_floats = L.used;
    m->arena = bl_malloc(L.used * sizeof(float), err);
    if (!m->arena) return -1;
    plan->n = 0;
    L = (Layout){plan, 0, m->arena};
    layout(&L, m);
    return 0;
}

int bl_block_index(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0) return -1;
    const char *p = name + n;
    long long v = 0;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > INT_MAX) return -1;
    }
    return *p == '.' ? (int)v : -1;
}

int bl_check_block_count(int n_layers, int max_index, const char *field, const char *what,
                         BlError *err) {
    if (max_index < 0)
        return bl_fail(err, "%s = %d but the file has no %s tensors", field, n_layers, what);
    if (n_layers != max_index + 1)
        return bl_fail(err, "%s = %d but the file has %s tensors for blocks 0..%d (%d blocks)", field,
                       n_layers, what, max_index, max_index + 1);
    return 0;
}

void bl_weight_plan_free(BlWeightPlan *plan) {
    free(plan->slots);
    plan->slots = NULL;
    plan->n = 0;
}

void bl_shape_str(char *buf, size_t n, const unsigned long long *dims, int n_dims) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%llu", i ? ", " : "", dims[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

// ----------------------------------------------------------------------------
// stop tokens

void bl_model_add_stop_token(BlModel *m, int id) {
    if (id < 0 || id >= m->cfg.vocab_size) return;
    for (int i = 0; i < m->n_stop_tokens; i++)
        if (m->stop_tokens[i] == id) return;
    int cap = (int)(sizeof m->stop_tokens / sizeof m->stop_tokens[0]);
    if (m->n_stop_tokens < cap) m->stop_tokens[m->n_stop_tokens++] = id;
}

void bl_model_add_default_stop_tokens(BlModel *m) {
    static const char *const turn_ends[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>"};
    bl_model_add_stop_token(m, bl_tokenizer_eos_id(m->tokenizer));
    for (size_t i = 0; i < sizeof turn_ends / sizeof turn_ends[0]; i++)
        bl_model_add_stop_token(m, bl_tokenizer_token_id(m->tokenizer, turn_ends[i]));
}

// ----------------------------------------------------------------------------
// load / free

int bl_model_load(BlModel **out, const char *path, BlError *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return bl_fail(err, "%s: no such file or folder", path);
    BlModel *m = bl_calloc(1, sizeof *m, err);
    if (!m) return -1;
    m->path = strdup(path);
    int rc = !m->path ? bl_fail(err, "%s: out of memory", path)
             : S_ISDIR(sb.st_mode) ? bl_load_hf(m, path, err)
                                   : bl_load_gguf(m, path, err);
    if (rc != 0) {
        bl_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void bl_model_free(BlModel *m) {
    if (!m) return;
    if (m->tokenizer) bl_tokenizer_free(m->tokenizer);
    free(m->chat_template);
    free(m->name);
    free(m->path);
    free(m->layers);
    free(m->arena);
    free(m);
}

size_t bl_model_weight_bytes(const BlModel *m) {
    return m->arena_floats * sizeof(float);
}
