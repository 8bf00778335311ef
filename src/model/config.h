/* config.h - the architecture hyper-parameters of a Llama-family model,
 * filled from GGUF metadata or a Hugging Face config.json. */
#ifndef BITLAB_CONFIG_H
#define BITLAB_CONFIG_H

#include <stdbool.h>

#include "core/error.h"

struct BlGguf;

typedef enum {
    BL_ARCH_LLAMA = 0, /* Llama-2/3, TinyLlama, SmolLM/SmolLM2, Mistral */
    BL_ARCH_QWEN2,     /* q/k/v bias */
    BL_ARCH_PHI3,      /* fused qkv and gate_up */
} BlArch;

typedef struct {
    BlArch arch;
    int dim;          /* hidden size */
    int n_layers;
    int n_heads;
    int n_kv_heads;   /* GQA: n_heads % n_kv_heads == 0 */
    int head_dim;     /* dim / n_heads unless the config says otherwise */
    int hidden_dim;   /* MLP intermediate size */
    int vocab_size;
    int max_seq_len;
    float rope_theta;
    float norm_eps;
    bool tied_embeddings;
    /* GGUF "llama" files store q/k rows permuted for ggml's interleaved RoPE
     * (pairs 2i,2i+1); HF checkpoints and qwen2/phi3 GGUFs rotate halves
     * (pairs i, i+head_dim/2). The forward honours whichever the file uses. */
    bool rope_interleaved;
    bool qkv_bias;
    bool fused_qkv;      /* Phi-3: one [(nh+2nkv)*hd, dim] matrix */
    bool fused_gate_up;  /* Phi-3: one [2*hidden, dim] matrix, gate rows first */
    /* 0 for an ordinary model. 8 or 4 for a ternary student exported by
     * bitlab (its block linears' weights already hold ternary × scale): every
     * block linear then quantises its input activations to this width, per
     * token (absmax), as the student did in training. */
    int ternary_act_bits;
} BlConfig;

/* The hyper-parameters alone, without touching any weight (for `bitlab
 * plan`; the loaders use the same parsers): from a Hugging Face config.json,
 * or from an open GGUF's metadata. Errors name the file and the field.
 * bl_config_check then validates the sizes and sets the arch flags
 * (qkv_bias, fused_qkv, fused_gate_up), as every load does. */
int bl_config_read_hf(BlConfig *c, const char *config_json, BlError *err);
int bl_config_from_gguf(BlConfig *c, const struct BlGguf *g, BlError *err);
int bl_config_check(BlConfig *c, BlError *err);

const char *bl_arch_name(BlArch a);
/* Parses "llama" / "mistral" / "qwen2" / "phi3" (GGUF general.architecture or
 * HF model_type). Returns -1 for an unknown name. */
int bl_arch_from_name(const char *name, BlArch *out);
/* Total parameter count of the model the config describes. */
long long bl_config_param_count(const BlConfig *c);

#endif
