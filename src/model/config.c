/* config.c - architecture names and parameter counting for BlConfig. */
#include "model/config.h"

#include <string.h>

const char *bl_arch_name(BlArch a) {
    switch (a) {
    case BL_ARCH_LLAMA: return "llama";
    case BL_ARCH_QWEN2: return "qwen2";
    case BL_ARCH_PHI3: return "phi3";
    }
    return "unknown";
}

int bl_arch_from_name(const char *name, BlArch *out) {
    static const struct { const char *name; BlArch arch; } names[] = {
        {"llama", BL_ARCH_LLAMA}, {"mistral", BL_ARCH_LLAMA},
        {"qwen2", BL_ARCH_QWEN2}, {"phi3", BL_ARCH_PHI3},
    };
    if (!name) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].arch;
            return 0;
        }
    }
    return -1;
}

long long bl_config_param_count(const BlConfig *c) {
    long long dim = c->dim, hd = c->head_dim, hidden = c->hidden_dim;
    long long q = (long long)c->n_heads * hd, kv = (long long)c->n_kv_heads * hd;
    long long attn = dim * (q + 2 * kv) + q * dim;
    if (c->qkv_bias) attn += q + 2 * kv;
    long long mlp = 3 * dim * hidden;
    long long per_layer = attn + mlp + 2 * dim;
    long long embd = (long long)c->vocab_size * dim;
    return embd * (c->tied_embeddings ? 1 : 2) + dim + per_layer * c->n_layers;
}
