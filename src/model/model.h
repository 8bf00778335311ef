/* model.h - one set of frozen fp32 weights, shared by teacher and student.
 *
 * The model owns its weights (dequantized once at load), the tokenizer and
 * the chat template of the file it came from. Linear weights are row-major
 * [out, in] as in both GGUF and safetensors, so y = x·Wᵀ is one sgemm. */
#ifndef BITLAB_MODEL_H
#define BITLAB_MODEL_H

#include <stddef.h>

#include "core/error.h"
#include "model/config.h"

struct BlTokenizer;

typedef enum {
    BL_LIN_Q, BL_LIN_K, BL_LIN_V, BL_LIN_QKV, BL_LIN_O,
    BL_LIN_GATE, BL_LIN_UP, BL_LIN_GATE_UP, BL_LIN_DOWN,
    BL_LIN_KINDS
} BlLinearKind;

typedef struct {
    float *w;   /* [out, in]; NULL when this linear does not exist in the arch */
    float *b;   /* [out] or NULL */
    int out, in;
} BlLinear;

typedef struct {
    float *attn_norm;           /* [dim] */
    BlLinear lin[BL_LIN_KINDS]; /* q,k,v or qkv; o; gate,up or gate_up; down */
    float *ffn_norm;            /* [dim] */
} BlLayer;

typedef struct BlModel {
    BlConfig cfg;
    float *tok_embd;  /* [vocab, dim] */
    float *out_norm;  /* [dim] */
    float *lm_head;   /* [vocab, dim]; == tok_embd when embeddings are tied */
    BlLayer *layers;  /* [n_layers] */

    struct BlTokenizer *tokenizer;
    char *chat_template;     /* the model's own Jinja template text, or NULL */
    char *name;              /* general.name / folder name */
    char *path;
    int stop_tokens[8];      /* eos / eot ids that end generation */
    int n_stop_tokens;

    /* every weight lives in one allocation so freeing is one call and memory
     * accounting is exact */
    float *arena;
    size_t arena_floats;
} BlModel;

/* Loads a GGUF file or a Hugging Face folder (config.json + safetensors +
 * tokenizer.json). On failure nothing is allocated and err names the file
 * and field at fault. */
int bl_model_load(BlModel **out, const char *path, BlError *err);
void bl_model_free(BlModel *m);

/* Bytes held by the frozen weights. */
size_t bl_model_weight_bytes(const BlModel *m);
const char *bl_linear_kind_name(BlLinearKind k);

#endif
