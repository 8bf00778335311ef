/* save_json.c - writes a loaded BlTokenizer back out as a Hugging Face
 * tokenizer.json (BPE model with vocab and merges in rank order; the
 * normalizer, pre-tokenizer, decoder and post-processor steps; added tokens
 * with their flags) and a tokenizer_config.json (bos/eos/unk tokens, whether
 * they are added, the chat template). Used by the packed export so that a
 * student distilled from a GGUF ships a tokenizer transformers can read.
 * Every step written is one load_json.c reads back to the same step. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic_file.h"
#include "tokenizer/tok_internal.h"

/* ---------------------------------------------------------------------------
 * strings: JSON needs valid UTF-8 without NUL */

static int add_str(cJSON *o, const char *key, const char *s, size_t len, BlError *err)
{
    if (strlen(s) != len || !utf8_valid(s, len))
        return bl_fail(err, "%s: \"%.*s\" is not valid UTF-8 text", key, (int)len, s);
    return cJSON_AddStringToObject(o, key, s) ? 0 : bl_fail(err, "out of memory");
}

static int token_text(const BlTokenizer *t, int id, const char **out, BlError *err)
{
    if (id < 0 || id >= t->n_vocab || !t->tok[id])
        return bl_fail(err, "token id %d has no text", id);
    if (strlen(t->tok[id]) != (size_t)t->tok_len[id] || !utf8_valid(t->tok[id], (size_t)t->tok_len[id]))
        return bl_fail(err, "token %d is not valid UTF-8 text", id);
    *out = t->tok[id];
    return 0;
}

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

/* {"String": s} or {"Regex": s} */
static cJSON *pattern(const char *s, bool regex)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, regex ? "Regex" : "String", s);
    return p;
}

/* One component as is, several as a "Sequence" under key. */
static cJSON *sequence(cJSON **items, int n, const char *key)
{
    if (n == 1)
        return items[0];
    cJSON *seq = typed("Sequence"), *list = cJSON_AddArrayToObject(seq, key);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(list, items[i]);
    return seq;
}

/* ---------------------------------------------------------------------------
 * pipeline steps */

static cJSON *normalizer(const BlTokenizer *t, BlError *err)
{
    if (t->n_norm == 0)
        return cJSON_CreateNull();
    cJSON **items = bl_calloc((size_t)t->n_norm, sizeof *items, err);
    if (!items)
        return NULL;
    for (int i = 0; i < t->n_norm; i++) {
        const NormStep *s = &t->norm[i];
        if (s->kind == NORM_NFC) {
            items[i] = typed("NFC");
        } else if (s->kind == NORM_PREPEND) {
            items[i] = typed("Prepend");
            cJSON_AddStringToObject(items[i], "prepend", s->a);
        } else {
            items[i] = typed("Replace");
            cJSON_AddItemToObject(items[i], "pattern", pattern(s->a, false));
            cJSON_AddStringToObject(items[i], "content", s->b);
        }
    }
    cJSON *o = sequence(items, t->n_norm, "normalizers");
    free(items);
    return o;
}

/* Split on \p{N} / \p{N}+ is what HF's Digits pre-tokenizer does */
static cJSON *split_step(const PreStep *s)
{
    bool digits = !s->literal && s->behavior == SPLIT_ISOLATED && !s->invert &&
                  (strcmp(s->pattern, "\\p{N}") == 0 || strcmp(s->pattern, "\\p{N}+") == 0);
    if (digits) {
        cJSON *o = typed("Digits");
        cJSON_AddBoolToObject(o, "individual_digits", strcmp(s->pattern, "\\p{N}") == 0);
        return o;
    }
    cJSON *o = typed("Split");
    cJSON_AddItemToObject(o, "pattern", pattern(s->pattern, !s->literal));
    cJSON_AddStringToObject(o, "behavior", s->behavior == SPLIT_ISOLATED ? "Isolated" : "Removed");
    cJSON_AddBoolToObject(o, "invert", s->invert);
    return o;
}

static cJSON *pre_tokenizer(const BlTokenizer *t, BlError *err)
{
    static const char *const schemes[] = {[PREPEND_ALWAYS] = "always", [PREPEND_FIRST] = "first",
                                          [PREPEND_NEVER] = "never"};
    if (t->n_pre == 0)
        return cJSON_CreateNull();
    cJSON **items = bl_calloc((size_t)t->n_pre, sizeof *items, err);
    if (!items)
        return NULL;
    for (int i = 0; i < t->n_pre; i++) {
        const PreStep *s = &t->pre[i];
        if (s->kind == PRE_SPLIT) {
            if (!s->pattern) {
                bl_fail(err, "pre-tokenizer step %d: split pattern text unknown", i);
                for (int j = 0; j < i; j++)
                    cJSON_Delete(items[j]);
                free(items);
                return NULL;
            }
            items[i] = split_step(s);
        } else if (s->kind == PRE_BYTE_LEVEL) {
            /* with a regex, both HF and load_json.c use the GPT-2 split */
            items[i] = typed("ByteLevel");
            cJSON_AddBoolToObject(items[i], "add_prefix_space", s->add_prefix_space);
            cJSON_AddBoolToObject(items[i], "trim_offsets", true);
            cJSON_AddBoolToObject(items[i], "use_regex", s->re != NULL);
        } else {
            items[i] = typed("Metaspace");
            cJSON_AddStringToObject(items[i], "replacement", s->replacement);
            cJSON_AddStringToObject(items[i], "prepend_scheme", schemes[s->scheme]);
            cJSON_AddBoolToObject(items[i], "split", s->split);
        }
    }
    cJSON *o = sequence(items, t->n_pre, "pretokenizers");
    free(items);
    return o;
}

static cJSON *decoder(const BlTokenizer *t, BlError *err)
{
    if (!t->has_decoder)
        return cJSON_CreateNull();
    cJSON **items = bl_calloc((size_t)t->n_dec + 1, sizeof *items, err);
    if (!items)
        return NULL;
    for (int i = 0; i < t->n_dec; i++) {
        const DecStep *s = &t->dec[i];
        switch (s->kind) {
        case DEC_BYTE_LEVEL:
            items[i] = typed("ByteLevel");
            cJSON_AddBoolToObject(items[i], "add_prefix_space", true);
            cJSON_AddBoolToObject(items[i], "trim_offsets", true);
            cJSON_AddBoolToObject(items[i], "use_regex", true);
            break;
        case DEC_REPLACE:
            items[i] = typed("Replace");
            cJSON_AddItemToObject(items[i], "pattern", pattern(s->a, false));
            cJSON_AddStringToObject(items[i], "content", s->b);
            break;
        case DEC_BYTE_FALLBACK: items[i] = typed("ByteFallback"); break;
        case DEC_FUSE: items[i] = typed("Fuse"); break;
        case DEC_STRIP:
            items[i] = typed("Strip");
            cJSON_AddStringToObject(items[i], "content", s->a);
            cJSON_AddNumberToObject(items[i], "start", s->start);
            cJSON_AddNumberToObject(items[i], "stop", s->stop);
            break;
        }
    }
    /* a decoder Sequence of zero steps still means "has a decoder" */
    cJSON *o = sequence(items, t->n_dec, "decoders");
    free(items);
    return o;
}

/* TemplateProcessing: BOS-like prefix, $A, EOS-like suffix (pair: both twice) */
static int add_piece(cJSON *list, cJSON *specials, const BlTokenizer *t, int id, int type_id,
                     BlError *err)
{
    const char *s;
    if (token_text(t, id, &s, err) < 0)
        return -1;
    cJSON *item = cJSON_CreateObject(), *sp = cJSON_AddObjectToObject(item, "SpecialToken");
    cJSON_AddStringToObject(sp, "id", s);
    cJSON_AddNumberToObject(sp, "type_id", type_id);
    cJSON_AddItemToArray(list, item);
    if (cJSON_GetObjectItemCaseSensitive(specials, s))
        return 0;
    cJSON *def = cJSON_AddObjectToObject(specials, s);
    cJSON_AddStringToObject(def, "id", s);
    cJSON *ids = cJSON_AddArrayToObject(def, "ids"), *toks = cJSON_AddArrayToObject(def, "tokens");
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(id));
    cJSON_AddItemToArray(toks, cJSON_CreateString(s));
    return 0;
}

static int add_template(cJSON *list, cJSON *specials, const BlTokenizer *t, const char *seq,
                        int type_id, BlError *err)
{
    for (int i = 0; i < t->n_prefix; i++)
        if (add_piece(list, specials, t, t->prefix[i], type_id, err) < 0)
            return -1;
    cJSON *item = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(item, "Sequence");
    cJSON_AddStringToObject(s, "id", seq);
    cJSON_AddNumberToObject(s, "type_id", type_id);
    cJSON_AddItemToArray(list, item);
    for (int i = 0; i < t->n_suffix; i++)
        if (add_piece(list, specials, t, t->suffix[i], type_id, err) < 0)
            return -1;
    return 0;
}

static cJSON *post_processor(const BlTokenizer *t, BlError *err)
{
    if (t->n_prefix == 0 && t->n_suffix == 0)
        return cJSON_CreateNull();
    cJSON *o = typed("TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(o, "single"), *pair = cJSON_AddArrayToObject(o, "pair");
    cJSON *specials = cJSON_AddObjectToObject(o, "special_tokens");
    if (add_template(single, specials, t, "A", 0, err) < 0 ||
        add_template(pair, specials, t, "A", 0, err) < 0 ||
        add_template(pair, specials, t, "B", 1, err) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------------------
 * model: vocab and merges */

static int by_rank(const void *pa, const void *pb)
{
    const MergeSlot *a = *(const MergeSlot *const *)pa, *b = *(const MergeSlot *const *)pb;
    return (a->rank > b->rank) - (a->rank < b->rank);
}

static int add_merges(cJSON *model, const BlTokenizer *t, BlError *err)
{
    cJSON *list = cJSON_AddArrayToObject(model, "merges");
    const MergeSlot **v = bl_malloc((t->merges.n + 1) * sizeof *v, err);
    if (!v || !list)
        return v ? bl_fail(err, "out of memory") : -1;
    size_t n = 0;
    for (size_t i = 0; t->merges.slots && i < t->merges.cap; i++)
        if (t->merges.slots[i].key != UINT64_MAX)
            v[n++] = &t->merges.slots[i];
    qsort(v, n, sizeof *v, by_rank);
    int rc = 0;
    /* the [a, b] form: a token may itself contain a space */
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *a, *b;
        rc = token_text(t, (int)(v[i]->key >> 32), &a, err);
        if (rc == 0)
            rc = token_text(t, (int)(uint32_t)v[i]->key, &b, err);
        if (rc == 0) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(a));
            cJSON_AddItemToArray(pair, cJSON_CreateString(b));
            cJSON_AddItemToArray(list, pair);
        }
    }
    free(v);
    return rc < 0 ? bl_fail_prefix(err, "model.merges") : 0;
}

static cJSON *model_json(const BlTokenizer *t, BlError *err)
{
    cJSON *m = typed("BPE");
    cJSON_AddNullToObject(m, "dropout");
    const char *unk = NULL;
    if (t->unk_id >= 0 && token_text(t, t->unk_id, &unk, err) < 0)
        goto fail;
    if (unk)
        cJSON_AddStringToObject(m, "unk_token", unk);
    else
        cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", t->fuse_unk);
    cJSON_AddBoolToObject(m, "byte_fallback", t->byte_fallback);
    cJSON_AddBoolToObject(m, "ignore_merges", t->ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab");
    for (int id = 0; id < t->n_vocab; id++) {
        const char *s;
        if (!t->tok[id])
            continue;
        if (token_text(t, id, &s, err) < 0)
            goto fail;
        cJSON_AddItemToObject(vocab, s, cJSON_CreateNumber(id));
    }
    if (add_merges(m, t, err) == 0)
        return m;
fail:
    cJSON_Delete(m);
    return NULL;
}

static cJSON *added_tokens(const BlTokenizer *t, BlError *err)
{
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < t->n_added; i++) {
        const AddedTok *a = &t->added[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(list, o);
        cJSON_AddNumberToObject(o, "id", a->id);
        if (add_str(o, "content", a->content, (size_t)a->len, err) < 0) {
            cJSON_Delete(list);
            return NULL;
        }
        cJSON_AddBoolToObject(o, "single_word", a->single_word);
        cJSON_AddBoolToObject(o, "lstrip", a->lstrip);
        cJSON_AddBoolToObject(o, "rstrip", a->rstrip);
        cJSON_AddBoolToObject(o, "normalized", a->normalized);
        cJSON_AddBoolToObject(o, "special", a->special);
    }
    return list;
}

static cJSON *tokenizer_json(const BlTokenizer *t, BlError *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    static const char *const keys[] = {"added_tokens", "normalizer", "pre_tokenizer",
                                       "post_processor", "decoder", "model"};
    for (int k = 0; k < 6; k++) {
        cJSON *part = k == 0   ? added_tokens(t, err)
                      : k == 1 ? normalizer(t, err)
                      : k == 2 ? pre_tokenizer(t, err)
                      : k == 3 ? post_processor(t, err)
                      : k == 4 ? decoder(t, err)
                               : model_json(t, err);
        if (!part) {
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddItemToObject(root, keys[k], part);
    }
    return root;
}

/* add_bos_token is true for a prefix of exactly BOS, false for none, and
 * absent otherwise (the post-processor then says it all) */
static void add_flag(cJSON *o, const char *key, const int *ids, int n, int id)
{
    if (n == 0)
        cJSON_AddBoolToObject(o, key, false);
    else if (n == 1 && ids[0] == id)
        cJSON_AddBoolToObject(o, key, true);
}

static cJSON *config_json(const BlTokenizer *t, const char *chat_template, BlError *err)
{
    cJSON *o = cJSON_CreateObject();
    const char *s;
    cJSON_AddStringToObject(o, "tokenizer_class", "PreTrainedTokenizerFast");
    struct { const char *key; int id; } named[] = {
        {"bos_token", t->bos_id}, {"eos_token", t->eos_id}, {"unk_token", t->unk_id}};
    for (int i = 0; i < 3; i++) {
        if (named[i].id < 0)
            continue;
        if (token_text(t, named[i].id, &s, err) < 0) {
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddStringToObject(o, named[i].key, s);
    }
    add_flag(o, "add_bos_token", t->prefix, t->n_prefix, t->bos_id);
    add_flag(o, "add_eos_token", t->suffix, t->n_suffix, t->eos_id);
    cJSON_AddBoolToObject(o, "clean_up_tokenization_spaces", false);
    if (chat_template && add_str(o, "chat_template", chat_template, strlen(chat_template), err) < 0) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---------------------------------------------------------------------------
 * files */

/* atomically (io/atomic_file.h): a reader never sees half a file */
static int write_json_file(const char *dir, const char *name, const cJSON *root, BlError *err)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return bl_fail(err, "%s/%s: path too long", dir, name);
    char *text = cJSON_Print(root);
    if (!text)
        return bl_fail(err, "%s: out of memory", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the NUL: the file ends with a newline */
    int rc = bl_atomic_write_file(path, text, n + 1, err);
    free(text);
    return rc;
}

int bl_tokenizer_save_json(const BlTokenizer *t, const char *chat_template, const char *dir,
                           BlError *err)
{
    cJSON *tj = tokenizer_json(t, err);
    if (!tj)
        return bl_fail_prefix(err, "%s/tokenizer.json", dir);
    int rc = write_json_file(dir, "tokenizer.json", tj, err);
    cJSON_Delete(tj);
    if (rc < 0)
        return -1;
    cJSON *cfg = config_json(t, chat_template, err);
    if (!cfg)
        return bl_fail_prefix(err, "%s/tokenizer_config.json", dir);
    rc = write_json_file(dir, "tokenizer_config.json", cfg, err);
    cJSON_Delete(cfg);
    return rc;
}
