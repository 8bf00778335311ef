/* gguf_vocab.c - tokenizer.ggml.* for an exported GGUF (see gguf_vocab.h). */
#include "export/gguf_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/textfile.h"
#include "tokenizer/tok_internal.h"

/* llama.cpp's llama_token_type values */
enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5 };

int bl_gguf_vocab_copy(BlGgufWriter *w, const BlGguf *src, BlError *err) {
    for (uint64_t i = 0; i < src->n_kv; i++)
        if (strncmp(src->kv[i].key, "tokenizer.", 10) == 0 && bl_gguf_copy_kv(w, &src->kv[i], err))
            return -1;
    return 0;
}

// ----------------------------------------------------------------------------
// the pre-tokenizer's llama.cpp name, from tokenizer.json

/* One signature word per HF pre-tokenizer step, appended to sig. */
static int pre_signature(const cJSON *o, char *sig, size_t cap, BlError *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!cJSON_IsString(type)) return bl_fail(err, "pre_tokenizer: a step without \"type\"");
    const char *t = type->valuestring;
    char word[64];
    if (strcmp(t, "Sequence") == 0) {
        const cJSON *c, *steps = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers");
        cJSON_ArrayForEach(c, steps) if (pre_signature(c, sig, cap, err)) return -1;
        return 0;
    }
    if (strcmp(t, "ByteLevel") == 0) {
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(o, "use_regex");
        snprintf(word, sizeof word, "%s", cJSON_IsFalse(re) ? "bytes" : "gpt2");
    } else if (strcmp(t, "Digits") == 0) {
        const cJSON *ind = cJSON_GetObjectItemCaseSensitive(o, "individual_digits");
        snprintf(word, sizeof word, "%s", cJSON_IsTrue(ind) ? "digit" : "digits");
    } else if (strcmp(t, "Split") == 0) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
        const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        const char *p = cJSON_IsString(re) ? re->valuestring : "";
        snprintf(word, sizeof word, "%s", strcmp(p, PRETOK_LLAMA3_REGEX) == 0  ? "llama3"
                                          : strcmp(p, PRETOK_QWEN2_REGEX) == 0 ? "qwen2"
                                          : strcmp(p, "\\p{N}") == 0           ? "digit"
                                                                               : "split?");
    } else {
        snprintf(word, sizeof word, "%s?", t);
    }
    size_t at = strlen(sig);
    snprintf(sig + at, cap - at, "%s%s", at ? "+" : "", word);
    return 0;
}

static int pre_name(const char *dir, const char **name, BlError *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cJSON *root = bl_json_read_file(path, err);
    if (!root) return -1;
    char sig[256] = "";
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    int rc = cJSON_IsObject(pre) ? pre_signature(pre, sig, sizeof sig, err)
                                 : bl_fail(err, "no pre_tokenizer");
    static const struct { const char *sig, *name; } KNOWN[] = {
        {"gpt2", "gpt2"}, {"digit+gpt2", "smollm"}, {"llama3+bytes", "llama-bpe"},
        {"qwen2+bytes", "qwen2"},
    };
    *name = NULL;
    for (size_t i = 0; rc == 0 && i < sizeof KNOWN / sizeof KNOWN[0]; i++)
        if (strcmp(sig, KNOWN[i].sig) == 0) *name = KNOWN[i].name;
    if (rc == 0 && !*name)
        rc = bl_fail(err, "its pre-tokenizer (%s) has no llama.cpp name bitlab knows (gpt2, "
                          "smollm, llama-bpe, qwen2)", sig);
    cJSON_Delete(root);
    return rc ? bl_fail_prefix(err, "%s", path) : 0;
}

/* tokenizer_config.json's pad_token (a string or {"content": ...}) as an id, or -1. */
static int pad_id(const BlModel *m, BlError *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", m->path);
    FILE *f = fopen(path, "rb");
    if (!f) return -1; /* optional file */
    fclose(f);
    cJSON *root = bl_json_read_file(path, err);
    if (!root) return -2;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pad_token");
    if (cJSON_IsObject(p)) p = cJSON_GetObjectItemCaseSensitive(p, "content");
    int id = cJSON_IsString(p) ? bl_tokenizer_token_id(m->tokenizer, p->valuestring) : -1;
    cJSON_Delete(root);
    return id;
}

// ----------------------------------------------------------------------------
// tokens, types, merges

static int cmp_rank(const void *a, const void *b) {
    const MergeSlot *x = *(const MergeSlot *const *)a, *y = *(const MergeSlot *const *)b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static int set_merges(BlGgufWriter *w, const BlTokenizer *t, BlError *err) {
    size_t n = 0;
    for (size_t i = 0; i < t->merges.cap; i++) n += t->merges.slots[i].key != UINT64_MAX;
    const MergeSlot **v = bl_calloc(n + 1, sizeof *v, err);
    char **s = v ? bl_calloc(n + 1, sizeof *s, err) : NULL;
    int rc = s ? 0 : -1;
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < t->merges.cap; i++)
        if (t->merges.slots[i].key != UINT64_MAX) v[k++] = &t->merges.slots[i];
    if (rc == 0) qsort(v, n, sizeof *v, cmp_rank);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int a = (int)(v[i]->key >> 32), b = (int)(uint32_t)v[i]->key;
        size_t la = (size_t)t->tok_len[a], lb = (size_t)t->tok_len[b];
        if (!(s[i] = bl_malloc(la + lb + 2, err))) rc = -1;
        else snprintf(s[i], la + lb + 2, "%s %s", t->tok[a], t->tok[b]);
    }
    if (rc == 0) rc = bl_gguf_set_str_array(w, "tokenizer.ggml.merges", (const char *const *)s, NULL, n, err);
    for (size_t i = 0; s && i < n; i++) free(s[i]);
    free(s);
    free(v);
    return rc;
}

static int set_tokens(BlGgufWriter *w, const BlTokenizer *t, int n, BlError *err) {
    const char **s = bl_calloc((size_t)n, sizeof *s, err);
    uint64_t *len = s ? bl_calloc((size_t)n, sizeof *len, err) : NULL;
    int32_t *type = len ? bl_calloc((size_t)n, sizeof *type, err) : NULL;
    char (*pad)[24] = type ? bl_calloc((size_t)n, sizeof *pad, err) : NULL;
    int rc = pad ? 0 : -1;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (i < t->n_vocab && t->tok[i]) {
            s[i] = t->tok[i];
            len[i] = (uint64_t)t->tok_len[i];
            type[i] = t->special[i] ? TT_CONTROL : TT_NORMAL;
        } else { /* as convert_hf_to_gguf.py: a placeholder nobody encodes to */
            snprintf(pad[i], sizeof pad[i], "[PAD%d]", i);
            s[i] = pad[i];
            len[i] = strlen(pad[i]);
            type[i] = TT_UNUSED;
        }
    }
    for (int i = 0; rc == 0 && i < t->n_added; i++)
        if (!t->added[i].special && t->added[i].id < n) type[t->added[i].id] = TT_USER_DEFINED;
    if (rc == 0) rc = bl_gguf_set_str_array(w, "tokenizer.ggml.tokens", s, len, (uint64_t)n, err);
    if (rc == 0) rc = bl_gguf_set_array(w, "tokenizer.ggml.token_type", BL_GGUF_INT32, type, (uint64_t)n, err);
    free(s);
    free(len);
    free(type);
    free(pad);
    return rc;
}

int bl_gguf_vocab_from_hf(BlGgufWriter *w, const BlModel *m, BlError *err) {
    const BlTokenizer *t = m->tokenizer;
    bool byte_level = false;
    for (int i = 0; i < t->n_pre; i++) byte_level |= t->pre[i].kind == PRE_BYTE_LEVEL;
    if (!byte_level || t->byte_fallback)
        return bl_fail(err, "%s: exporting a SentencePiece-style tokenizer from a Hugging Face "
                            "folder is not supported (only byte-level BPE); convert the model with "
                            "llama.cpp's convert_hf_to_gguf.py and train/export from that GGUF",
                       m->path);
    const char *pre;
    if (pre_name(m->path, &pre, err)) return -1;
    int n = m->cfg.vocab_size > t->n_vocab ? m->cfg.vocab_size : t->n_vocab;
    int pad = pad_id(m, err);
    if (pad == -2) return -1;
    if (bl_gguf_set_str(w, "tokenizer.ggml.model", "gpt2", err) ||
        bl_gguf_set_str(w, "tokenizer.ggml.pre", pre, err) || set_tokens(w, t, n, err) ||
        set_merges(w, t, err))
        return -1;
    if (t->bos_id >= 0 && bl_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos_id, err))
        return -1;
    if (t->eos_id >= 0 && bl_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos_id, err))
        return -1;
    if (pad >= 0 && bl_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad, err))
        return -1;
    bool add_bos = t->n_prefix > 0 && t->prefix[0] == t->bos_id;
    bool add_eos = t->n_suffix > 0 && t->suffix[t->n_suffix - 1] == t->eos_id;
    if (bl_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos, err) ||
        bl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos, err))
        return -1;
    if (m->chat_template && bl_gguf_set_str(w, "tokenizer.chat_template", m->chat_template, err))
        return -1;
    return 0;
}
