/* load_internal.h - what the format loaders (load_gguf.c, load_hf.c) share
 * with model.c: the table of weights an architecture needs, with canonical
 * (GGUF-style) and Hugging Face names, each pointing at its slot in the
 * model's fp32 arena. Private to src/model/. */
#ifndef BITLAB_MODEL_LOAD_INTERNAL_H
#define BITLAB_MODEL_LOAD_INTERNAL_H

#include "model/model.h"

typedef struct {
    char name[64];     /* canonical: "blk.3.attn_q.weight" */
    char hf_name[96];  /* "model.layers.3.self_attn.q_proj.weight" */
    float *dst;        /* slot in m->arena */
    int rows, cols;    /* row-major [rows, cols]; cols == 0 for a vector */
} BlWeightSlot;

typedef struct {
    BlWeightSlot *slots;
    int n;
} BlWeightPlan;

/* A loader's check of one weight against its file (present, shape, type),
 * called with s->dst == NULL before the arena exists. */
typedef int (*BlSlotCheck)(void *ctx, const BlWeightSlot *s, BlError *err);

/* Checks m->cfg (arch flags are set from cfg.arch here), lists every weight
 * the architecture needs and, when check is not NULL, checks each against
 * the file; only then allocates m->arena and points the slots into it. The
 * caller validates n_layers against the file first (bl_check_block_count):
 * m->layers and the slot table are sized from it. */
int bl_model_plan(BlModel *m, BlWeightPlan *plan, BlSlotCheck check, void *ctx, BlError *err);

/* N when name is prefix + decimal N + ".", else -1 ("blk.", "model.layers."). */
int bl_block_index(const char *name, const char *prefix);
/* n_layers (the config's `field`) against the highest block index seen among
 * the file's `what` tensors (-1: none). */
int bl_check_block_count(int n_layers, int max_index, const char *field, const char *what,
                         BlError *err);
void bl_weight_plan_free(BlWeightPlan *plan);

/* Formats "[a, b]" / "[a]" for shape errors. */
void bl_shape_str(char *buf, size_t n, const unsigned long long *dims, int n_dims);

/* Stop tokens: adds id once (ids outside the vocabulary are skipped), and
 * adds the tokenizer's eos plus the known end-of-turn specials it has. */
void bl_model_add_stop_token(BlModel *m, int id);
void bl_model_add_default_stop_tokens(BlModel *m);

/* Format loaders: fill cfg, weights, tokenizer, template, name of a zeroed
 * model; on failure the caller frees what was set. */
int bl_load_gguf(BlModel *m, const char *path, BlError *err);
int bl_load_hf(BlModel *m, const char *dir, BlError *err);

/* load_packed.c: a folder from bitlab's packed ternary export
 * (export/packed_safetensors.h). bl_packed_config returns 1 and sets
 * cfg.ternary_act_bits when config.json's quantization_config names that
 * format, 0 when there is no quantization_config, -1 for any other or a
 * malformed one; bl_load_packed_weights then fills the weights. */
struct cJSON;
struct BlSafetensors;
/* load_hf.c: num_hidden_layers against the model.layers.N.* names, vocab_size
 * and hidden_size against model.embed_tokens.weight (before anything is sized
 * from them); errors name config_path. */
int bl_hf_check_sizes(const BlConfig *c, const struct BlSafetensors *st, const char *config_path,
                      BlError *err);
int bl_packed_config(const struct cJSON *root, const char *path, BlConfig *c, BlError *err);
int bl_load_packed_weights(BlModel *m, const char *dir, BlError *err);

#endif
