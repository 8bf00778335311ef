/* load_hf.c - loads a Hugging Face folder: config.json, model.safetensors
 * (or its sharded index), tokenizer.json / tokenizer_config.json and
 * generation_config.json. HF checkpoints rotate halves in RoPE, so
 * cfg.rope_interleaved is false. */
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/safetensors.h"
#include "io/textfile.h"
#include "model/load_internal.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *dir;
    char path[4096]; /* scratch: dir + "/" + file */
} Folder;

static const char *file_in(Folder *f, const char *name) {
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, name);
    return f->path;
}

static bool exists(const char *path) {
    return access(path, F_OK) == 0;
}

// ----------------------------------------------------------------------------
// config.json

/* An integer field; absent or null gives dflt when dflt >= 0, else an error. */
static int json_int(const cJSON *root, const char *path, const char *field, int dflt, int *out,
                    BlError *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v || cJSON_IsNull(v)) {
        if (dflt < 0) return bl_fail(err, "%s: required field \"%s\" is missing", path, field);
        *out = dflt;
        return 0;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (d != floor(d) || d < 0 || d > INT_MAX)
        return bl_fail(err, "%s: field \"%s\" must be a non-negative integer", path, field);
    *out = (int)d;
    return 0;
}

static int json_float(const cJSON *root, const char *path, const char *field, bool required,
                      float dflt, float *out, BlError *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v || cJSON_IsNull(v)) {
        if (required) return bl_fail(err, "%s: required field \"%s\" is missing", path, field);
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return bl_fail(err, "%s: field \"%s\" must be a number", path, field);
    *out = (float)v->valuedouble;
    return 0;
}

static int json_bool(const cJSON *root, const char *path, const char *field, bool *out,
                     BlError *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, field);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return bl_fail(err, "%s: field \"%s\" must be true or false", path, field);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* model_type and the "architectures" class names: every class listed must
 * be a supported one and agree with model_type (a GPT2LMHeadModel folder
 * whose model_type says "llama" is refused, not loaded as Llama). */
static int config_arch(const cJSON *root, const char *path, BlArch *arch, BlError *err) {
    static const struct { const char *cls, *type; } classes[] = {
        {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"},
        {"Qwen2ForCausalLM", "qwen2"}, {"Phi3ForCausalLM", "phi3"},
    };
    static const char supported[] = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
                                    "Phi3ForCausalLM";
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *name = cJSON_IsString(mt) ? mt->valuestring : NULL;
    if (mt && !cJSON_IsNull(mt) && !name)
        return bl_fail(err, "%s: field \"model_type\" must be a string", path);
    if (name && bl_arch_from_name(name, arch) != 0)
        return bl_fail(err, "%s: model_type \"%.64s\" is not supported (llama, mistral, qwen2, phi3)",
                       path, name);
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (archs && !cJSON_IsNull(archs) && !cJSON_IsArray(archs))
        return bl_fail(err, "%s: field \"architectures\" must be a list of class names", path);
    const cJSON *cls;
    int i = 0;
    const cJSON *list = cJSON_IsArray(archs) ? archs : NULL;
    cJSON_ArrayForEach(cls, list) {
        if (!cJSON_IsString(cls))
            return bl_fail(err, "%s: architectures[%d] is not a string", path, i);
        size_t k = 0;
        while (k < sizeof classes / sizeof classes[0] && strcmp(cls->valuestring, classes[k].cls) != 0) k++;
        if (k == sizeof classes / sizeof classes[0])
            return bl_fail(err, "%s: architectures[%d] \"%.64s\" is not supported (supported: %s)", path,
                           i, cls->valuestring, supported);
        BlArch a;
        bl_arch_from_name(classes[k].type, &a);
        if (name && a != *arch)
            return bl_fail(err, "%s: architectures[%d] \"%s\" contradicts model_type \"%.64s\"", path, i,
                           cls->valuestring, name);
        if (!name) {
            name = classes[k].type;
            *arch = a;
        }
        i++;
    }
    if (!name)
        return bl_fail(err, "%s: required field \"model_type\" is missing (and \"architectures\" "
                       "names no class; supported: %s)", path, supported);
    return 0;
}

/* Options that would change the function computed: refuse rather than ignore. */
static int config_unsupported(const cJSON *root, const char *path, BlError *err) {
    static const char *const must_be_false[] = {"attention_bias", "mlp_bias"};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (v && !cJSON_IsNull(v))
        return bl_fail(err, "%s: field \"rope_scaling\" is not supported (only null)", path);
    v = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "silu") == 0))
        return bl_fail(err, "%s: field \"hidden_act\" is not supported (only \"silu\")", path);
    for (size_t i = 0; i < sizeof must_be_false / sizeof must_be_false[0]; i++) {
        v = cJSON_GetObjectItemCaseSensitive(root, must_be_false[i]);
        if (cJSON_IsTrue(v))
            return bl_fail(err, "%s: field \"%s\" = true is not supported", path, must_be_false[i]);
    }
    return 0;
}

static int parse_config(BlConfig *c, const cJSON *root, const char *path, BlError *err) {
    if (!cJSON_IsObject(root)) return bl_fail(err, "%s: not a JSON object", path);
    if (config_arch(root, path, &c->arch, err) || config_unsupported(root, path, err) ||
        json_int(root, path, "hidden_size", -1, &c->dim, err) ||
        json_int(root, path, "num_hidden_layers", -1, &c->n_layers, err) ||
        json_int(root, path, "num_attention_heads", -1, &c->n_heads, err) ||
        json_int(root, path, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err) ||
        json_int(root, path, "intermediate_size", -1, &c->hidden_dim, err) ||
        json_int(root, path, "vocab_size", -1, &c->vocab_size, err) ||
        json_int(root, path, "max_position_embeddings", -1, &c->max_seq_len, err) ||
        json_float(root, path, "rope_theta", false, 10000.0f, &c->rope_theta, err) ||
        json_float(root, path, "rms_norm_eps", true, 0.0f, &c->norm_eps, err) ||
        json_bool(root, path, "tie_word_embeddings", &c->tied_embeddings, err))
        return -1;
    if (c->n_heads == 0) return bl_fail(err, "%s: field \"num_attention_heads\" is 0", path);
    if (json_int(root, path, "head_dim", c->dim / c->n_heads, &c->head_dim, err)) return -1;
    c->rope_interleaved = false;
    return 0;
}

int bl_config_read_hf(BlConfig *c, const char *config_json, BlError *err) {
    cJSON *root = bl_json_read_file(config_json, err);
    if (!root) return -1;
    int rc = parse_config(c, root, config_json, err);
    cJSON_Delete(root);
    return rc;
}

// ----------------------------------------------------------------------------
// weights

static int open_weights(BlSafetensors **st, Folder *f, BlError *err) {
    if (exists(file_in(f, "model.safetensors.index.json"))) return bl_st_open_index(st, f->path, err);
    if (exists(file_in(f, "model.safetensors"))) return bl_st_open(st, f->path, err);
    return bl_fail(err, "%s: neither model.safetensors nor model.safetensors.index.json found",
                   f->dir);
}

typedef struct {
    const BlSafetensors *st;
    const char *where; /* where a missing tensor was looked for */
} StCheck;

/* Present with the expected shape: checked for every weight before the arena
 * is allocated (bl_model_plan), so s->dst may be NULL. */
static int check_slot(void *ctx, const BlWeightSlot *s, BlError *err) {
    const StCheck *k = ctx;
    const BlStTensor *t = bl_st_tensor(k->st, s->hf_name);
    if (!t) return bl_fail(err, "%s: missing tensor %s", k->where, s->hf_name);
    const char *path = bl_st_tensor_path(k->st, t);
    unsigned long long want[2] = {(unsigned long long)s->rows, (unsigned long long)s->cols};
    int want_dims = s->cols ? 2 : 1;
    bool ok = t->n_dims == want_dims;
    for (int i = 0; ok && i < want_dims; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        unsigned long long got[BL_ST_MAX_DIMS];
        for (int i = 0; i < t->n_dims; i++) got[i] = t->shape[i];
        char ws[64], gs[160];
        bl_shape_str(ws, sizeof ws, want, want_dims);
        bl_shape_str(gs, sizeof gs, got, t->n_dims);
        return bl_fail(err, "%s: tensor %s: expected shape %s, got %s", path, s->hf_name, ws, gs);
    }
    return 0;
}

int bl_hf_check_sizes(const BlConfig *c, const BlSafetensors *st, const char *config_path,
                      BlError *err) {
    int max_layer = -1;
    for (size_t i = 0; i < st->n_tensors; i++) {
        int b = bl_block_index(st->tensors[i].name, "model.layers.");
        if (b > max_layer) max_layer = b;
    }
    if (bl_check_block_count(c->n_layers, max_layer, "\"num_hidden_layers\"", "model.layers.N.*",
                             err) != 0)
        return bl_fail_prefix(err, "%s", config_path);
    const BlStTensor *e = bl_st_tensor(st, "model.embed_tokens.weight");
    if (!e) return bl_fail(err, "%s: missing tensor model.embed_tokens.weight", st->files[0].path);
    if (e->n_dims != 2 || e->shape[0] != (uint64_t)c->vocab_size || e->shape[1] != (uint64_t)c->dim)
        return bl_fail(err, "%s: \"vocab_size\" %d and \"hidden_size\" %d do not match tensor "
                       "model.embed_tokens.weight (%d-D, %llu rows of %llu) in %s", config_path,
                       c->vocab_size, c->dim, e->n_dims, (unsigned long long)e->shape[0],
                       e->n_dims > 1 ? (unsigned long long)e->shape[1] : 0ULL,
                       bl_st_tensor_path(st, e));
    return 0;
}

static int load_weights(BlModel *m, Folder *f, BlError *err) {
    BlSafetensors *st = NULL;
    if (open_weights(&st, f, err) != 0) return -1;
    /* where a missing tensor was looked for */
    char where[sizeof f->path];
    snprintf(where, sizeof where, "%s",
             st->n_files == 1 ? st->files[0].path : file_in(f, "model.safetensors.index.json"));
    BlWeightPlan plan = {0};
    StCheck k = {st, where};
    int rc = bl_hf_check_sizes(&m->cfg, st, file_in(f, "config.json"), err);
    if (rc == 0 && (rc = bl_model_plan(m, &plan, check_slot, &k, err)) != 0 && err &&
        !strstr(err->msg, ".safetensors"))
        bl_fail_prefix(err, "%s", file_in(f, "config.json"));
    for (int i = 0; rc == 0 && i < plan.n; i++) {
        const BlStTensor *t = bl_st_tensor(st, plan.slots[i].hf_name);
        rc = bl_st_to_f32(st, t, plan.slots[i].dst, err);
    }
    bl_weight_plan_free(&plan);
    bl_st_close(st);
    return rc;
}

// ----------------------------------------------------------------------------
// tokenizer, chat template, stop tokens

/* tokenizer_config.json "chat_template": a string, or a list of
 * {name, template} of which the "default" one (else the first) is used. */
static const char *pick_template(const cJSON *tc) {
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
    if (cJSON_IsString(ct)) return ct->valuestring;
    if (!cJSON_IsArray(ct)) return NULL;
    const cJSON *e, *first = NULL;
    cJSON_ArrayForEach(e, ct) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(e, "template");
        if (!cJSON_IsString(tmpl)) continue;
        if (!first) first = tmpl;
        if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0) return tmpl->valuestring;
    }
    return first ? first->valuestring : NULL;
}

static int load_template(BlModel *m, Folder *f, BlError *err) {
    const char *tc_path = file_in(f, "tokenizer_config.json");
    if (exists(tc_path)) {
        cJSON *tc = bl_json_read_file(tc_path, err);
        if (!tc) return -1;
        const char *text = pick_template(tc);
        if (text && !(m->chat_template = strdup(text))) {
            cJSON_Delete(tc);
            return bl_fail(err, "%s: out of memory", tc_path);
        }
        cJSON_Delete(tc);
        if (m->chat_template) return 0;
    }
    /* newer folders keep the template in its own file */
    const char *jinja = file_in(f, "chat_template.jinja");
    if (exists(jinja) && !(m->chat_template = bl_read_text_file(jinja, NULL, err))) return -1;
    return 0;
}

static int load_generation_config(BlModel *m, Folder *f, BlError *err) {
    const char *path = file_in(f, "generation_config.json");
    if (!exists(path)) return 0;
    cJSON *gc = bl_json_read_file(path, err);
    if (!gc) return -1;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(gc, "eos_token_id");
    int rc = 0;
    if (cJSON_IsNumber(eos)) {
        bl_model_add_stop_token(m, eos->valueint);
    } else if (cJSON_IsArray(eos)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, eos) {
            if (!cJSON_IsNumber(e)) {
                rc = bl_fail(err, "%s: field \"eos_token_id\" must hold integers", path);
                break;
            }
            bl_model_add_stop_token(m, e->valueint);
        }
    } else if (eos && !cJSON_IsNull(eos)) {
        rc = bl_fail(err, "%s: field \"eos_token_id\" must be an integer or a list", path);
    }
    cJSON_Delete(gc);
    return rc;
}

static int load_tokenizer(BlModel *m, Folder *f, BlError *err) {
    char tok_json[sizeof f->path];
    snprintf(tok_json, sizeof tok_json, "%s", file_in(f, "tokenizer.json"));
    const char *tc = file_in(f, "tokenizer_config.json");
    if (bl_tokenizer_from_json(&m->tokenizer, tok_json, exists(tc) ? tc : NULL, err) != 0) return -1;
    if (bl_tokenizer_vocab_size(m->tokenizer) > m->cfg.vocab_size)
        return bl_fail(err, "%s: %d token ids, more than config.json's \"vocab_size\" %d (the "
                       "embedding has no row for the rest)", tok_json,
                       bl_tokenizer_vocab_size(m->tokenizer), m->cfg.vocab_size);
    bl_model_add_stop_token(m, bl_tokenizer_eos_id(m->tokenizer));
    if (load_generation_config(m, f, err) != 0) return -1;
    bl_model_add_default_stop_tokens(m);
    return load_template(m, f, err);
}

static int set_name(BlModel *m, const char *dir, BlError *err) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/') start--;
    m->name = strndup(dir + start, n - start);
    return m->name ? 0 : bl_fail(err, "out of memory");
}

int bl_load_hf(BlModel *m, const char *dir, BlError *err) {
    Folder f = {.dir = dir};
    const char *cfg_path = file_in(&f, "config.json");
    cJSON *root = bl_json_read_file(cfg_path, err);
    if (!root) return -1;
    int rc = parse_config(&m->cfg, root, cfg_path, err);
    int packed = rc == 0 ? bl_packed_config(root, cfg_path, &m->cfg, err) : -1;
    cJSON_Delete(root);
    if (packed < 0 || (packed ? bl_load_packed_weights(m, dir, err) : load_weights(m, &f, err)) != 0 ||
        load_tokenizer(m, &f, err) != 0)
        return -1;
    return set_name(m, dir, err);
}
