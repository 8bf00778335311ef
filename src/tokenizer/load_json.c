/* load_json.c - builds a BlTokenizer from a Hugging Face tokenizer.json (BPE
 * model; the normalizers, pre-tokenizers, decoders and post-processors the
 * supported families use) and optionally tokenizer_config.json. Every error
 * names the file and the JSON field at fault. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/textfile.h"
#include "tokenizer/tok_internal.h"

/* ---------------------------------------------------------------------------
 * typed field access: missing and null read as the default */

static const cJSON *field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNull(v) ? NULL : v;
}

static int get_bool(const cJSON *o, const char *key, bool dflt, bool *out, const char *where,
                    BlError *err)
{
    *out = dflt;
    const cJSON *v = field(o, key);
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return bl_fail(err, "%s.%s: expected true or false", where, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* required unless dflt is given; *out points into the JSON tree */
static int get_str(const cJSON *o, const char *key, const char *dflt, const char **out,
                   const char *where, BlError *err)
{
    *out = dflt;
    const cJSON *v = field(o, key);
    if (!v) {
        if (!dflt)
            return bl_fail(err, "%s.%s: missing", where, key);
        return 0;
    }
    if (!cJSON_IsString(v))
        return bl_fail(err, "%s.%s: expected a string", where, key);
    *out = v->valuestring;
    return 0;
}

static int as_int(const cJSON *v, int *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 1e9)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int get_int(const cJSON *o, const char *key, int dflt, int *out, const char *where,
                   BlError *err)
{
    *out = dflt;
    const cJSON *v = field(o, key);
    if (!v) {
        if (dflt < 0)
            return bl_fail(err, "%s.%s: missing", where, key);
        return 0;
    }
    if (as_int(v, out) < 0)
        return bl_fail(err, "%s.%s: expected a non-negative integer", where, key);
    return 0;
}

static char *dup_str(const char *s, BlError *err)
{
    size_t n = strlen(s);
    char *c = bl_malloc(n + 1, err);
    if (c)
        memcpy(c, s, n + 1);
    return c;
}

/* the string inside {"String": "..."} (Replace / Split patterns) */
static int pattern_string(const cJSON *o, const char **out, bool *is_regex, const char *where,
                          BlError *err)
{
    const cJSON *p = field(o, "pattern");
    if (!cJSON_IsObject(p))
        return bl_fail(err, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", where);
    const cJSON *s = field(p, "String"), *r = field(p, "Regex");
    if (cJSON_IsString(s)) {
        *out = s->valuestring;
        if (is_regex)
            *is_regex = false;
        return 0;
    }
    if (cJSON_IsString(r) && is_regex) {
        *out = r->valuestring;
        *is_regex = true;
        return 0;
    }
    return bl_fail(err, "%s.pattern: expected {\"String\": \"...\"}%s", where,
                   is_regex ? " or {\"Regex\": \"...\"}" : "");
}

/* ---------------------------------------------------------------------------
 * pipeline sections; `where` is the JSON path for messages */

static void *grow(void *v, int n, size_t elem, BlError *err)
{
    void *p = realloc(v, (size_t)(n + 1) * elem);
    if (!p)
        bl_fail(err, "out of memory");
    return p;
}

/* Every tokenizer.json component is an object with a "type". */
static int node_type(const cJSON *o, const char *where, const char **type, BlError *err)
{
    *type = NULL;
    if (!cJSON_IsObject(o))
        return bl_fail(err, "%s: expected an object", where);
    return get_str(o, "type", NULL, type, where, err);
}

typedef int (*ParseFn)(BlTokenizer *t, const cJSON *o, const char *where, BlError *err);

/* A "Sequence" component: parses each element of o[key] in order. */
static int parse_each(BlTokenizer *t, const cJSON *o, const char *key, const char *where,
                      ParseFn parse, BlError *err)
{
    const cJSON *list = field(o, key);
    if (!cJSON_IsArray(list))
        return bl_fail(err, "%s.%s: expected an array", where, key);
    int i = 0;
    for (const cJSON *c = list->child; c; c = c->next, i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.%s[%d]", where, key, i);
        if (parse(t, c, sub, err) < 0)
            return -1;
    }
    return 0;
}

static int parse_normalizer(BlTokenizer *t, const cJSON *o, const char *where, BlError *err)
{
    if (!o)
        return 0;
    const char *type;
    if (node_type(o, where, &type, err) < 0)
        return -1;
    if (strcmp(type, "Sequence") == 0) {
        return parse_each(t, o, "normalizers", where, parse_normalizer, err);
    }
    NormStep st = {0};
    const char *a = NULL, *b = NULL;
    if (strcmp(type, "NFC") == 0) {
        st.kind = NORM_NFC;
    } else if (strcmp(type, "Prepend") == 0) {
        st.kind = NORM_PREPEND;
        if (get_str(o, "prepend", NULL, &a, where, err) < 0)
            return -1;
    } else if (strcmp(type, "Replace") == 0) {
        st.kind = NORM_REPLACE;
        if (pattern_string(o, &a, NULL, where, err) < 0 ||
            get_str(o, "content", NULL, &b, where, err) < 0)
            return -1;
    } else {
        return bl_fail(err, "%s.type: normalizer \"%s\" is not supported", where, type);
    }
    if ((a && !(st.a = dup_str(a, err))) || (b && !(st.b = dup_str(b, err)))) {
        norm_step_free(&st);
        return -1;
    }
    NormStep *v = grow(t->norm, t->n_norm, sizeof *v, err);
    if (!v) {
        norm_step_free(&st);
        return -1;
    }
    t->norm = v;
    t->norm[t->n_norm++] = st;
    return 0;
}

static int push_pre(BlTokenizer *t, PreStep *st, BlError *err)
{
    PreStep *v = grow(t->pre, t->n_pre, sizeof *v, err);
    if (!v) {
        pre_step_free(st);
        return -1;
    }
    t->pre = v;
    t->pre[t->n_pre++] = *st;
    return 0;
}

static int parse_pre(BlTokenizer *t, const cJSON *o, const char *where, BlError *err)
{
    if (!o)
        return 0;
    const char *type;
    if (node_type(o, where, &type, err) < 0)
        return -1;
    PreStep st = {0};
    if (strcmp(type, "Sequence") == 0) {
        return parse_each(t, o, "pretokenizers", where, parse_pre, err);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        bool use_regex;
        st.kind = PRE_BYTE_LEVEL;
        if (get_bool(o, "add_prefix_space", false, &st.add_prefix_space, where, err) < 0 ||
            get_bool(o, "use_regex", true, &use_regex, where, err) < 0)
            return -1;
        if (use_regex &&
            !(st.re = pretok_compile(PRETOK_GPT2_REGEX, strlen(PRETOK_GPT2_REGEX), false, err)))
            return -1;
    } else if (strcmp(type, "Split") == 0) {
        const char *pat, *behavior;
        bool is_regex = true;
        st.kind = PRE_SPLIT;
        if (pattern_string(o, &pat, &is_regex, where, err) < 0 ||
            get_str(o, "behavior", NULL, &behavior, where, err) < 0 ||
            get_bool(o, "invert", false, &st.invert, where, err) < 0)
            return -1;
        if (strcmp(behavior, "Isolated") == 0)
            st.behavior = SPLIT_ISOLATED;
        else if (strcmp(behavior, "Removed") == 0)
            st.behavior = SPLIT_REMOVED;
        else
            return bl_fail(err, "%s.behavior: \"%s\" is not supported (Isolated, Removed)", where,
                           behavior);
        if (!(st.re = pretok_compile(pat, strlen(pat), !is_regex, err)))
            return bl_fail_prefix(err, "%s.pattern", where);
        st.literal = !is_regex;
        if (!(st.pattern = dup_str(pat, err))) {
            pre_step_free(&st);
            return -1;
        }
    } else if (strcmp(type, "Digits") == 0) {
        bool individual;
        st.kind = PRE_SPLIT;
        if (get_bool(o, "individual_digits", false, &individual, where, err) < 0)
            return -1;
        const char *pat = individual ? "\\p{N}" : "\\p{N}+";
        if (!(st.re = pretok_compile(pat, strlen(pat), false, err)))
            return -1;
        if (!(st.pattern = dup_str(pat, err))) {
            pre_step_free(&st);
            return -1;
        }
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *rep, *scheme;
        bool legacy_prefix;
        st.kind = PRE_METASPACE;
        if (get_str(o, "replacement", "\xE2\x96\x81", &rep, where, err) < 0 ||
            get_bool(o, "add_prefix_space", true, &legacy_prefix, where, err) < 0 ||
            get_str(o, "prepend_scheme", legacy_prefix ? "always" : "never", &scheme, where, err) < 0 ||
            get_bool(o, "split", true, &st.split, where, err) < 0)
            return -1;
        if (strcmp(scheme, "always") == 0)
            st.scheme = PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0)
            st.scheme = PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0)
            st.scheme = PREPEND_NEVER;
        else
            return bl_fail(err, "%s.prepend_scheme: \"%s\" is not always, first or never", where,
                           scheme);
        if (!(st.replacement = dup_str(rep, err)))
            return -1;
    } else {
        return bl_fail(err, "%s.type: pre-tokenizer \"%s\" is not supported", where, type);
    }
    return push_pre(t, &st, err);
}

static int parse_decoder(BlTokenizer *t, const cJSON *o, const char *where, BlError *err)
{
    if (!o)
        return 0;
    const char *type;
    if (node_type(o, where, &type, err) < 0)
        return -1;
    t->has_decoder = true;
    if (strcmp(type, "Sequence") == 0) {
        return parse_each(t, o, "decoders", where, parse_decoder, err);
    }
    DecStep st = {0};
    const char *a = NULL, *b = NULL;
    if (strcmp(type, "ByteLevel") == 0) {
        st.kind = DEC_BYTE_LEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        st.kind = DEC_BYTE_FALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        st.kind = DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        st.kind = DEC_REPLACE;
        if (pattern_string(o, &a, NULL, where, err) < 0 ||
            get_str(o, "content", NULL, &b, where, err) < 0)
            return -1;
    } else if (strcmp(type, "Strip") == 0) {
        st.kind = DEC_STRIP;
        if (get_str(o, "content", NULL, &a, where, err) < 0 ||
            get_int(o, "start", 0, &st.start, where, err) < 0 ||
            get_int(o, "stop", 0, &st.stop, where, err) < 0)
            return -1;
    } else {
        return bl_fail(err, "%s.type: decoder \"%s\" is not supported", where, type);
    }
    if ((a && !(st.a = dup_str(a, err))) || (b && !(st.b = dup_str(b, err)))) {
        dec_step_free(&st);
        return -1;
    }
    DecStep *v = grow(t->dec, t->n_dec, sizeof *v, err);
    if (!v) {
        dec_step_free(&st);
        return -1;
    }
    t->dec = v;
    t->dec[t->n_dec++] = st;
    return 0;
}

static int append_ids(int **v, int *n, const int *ids, int k, BlError *err)
{
    int *p = realloc(*v, (size_t)(*n + k + 1) * sizeof *p);
    if (!p)
        return bl_fail(err, "out of memory");
    memcpy(p + *n, ids, (size_t)k * sizeof *p);
    *v = p;
    *n += k;
    return 0;
}

/* TemplateProcessing "single": special tokens before $A go to the prefix,
 * after it to the suffix. */
static int parse_template(BlTokenizer *t, const cJSON *o, const char *where, BlError *err)
{
    const cJSON *single = field(o, "single"), *specials = field(o, "special_tokens");
    if (!cJSON_IsArray(single))
        return bl_fail(err, "%s.single: expected an array", where);
    bool after = false;
    int i = 0;
    for (const cJSON *c = single->child; c; c = c->next, i++) {
        const cJSON *sp = field(c, "SpecialToken");
        if (field(c, "Sequence")) {
            after = true;
            continue;
        }
        const char *name;
        char sub[256];
        snprintf(sub, sizeof sub, "%s.single[%d].SpecialToken", where, i);
        if (!cJSON_IsObject(sp))
            return bl_fail(err, "%s.single[%d]: expected SpecialToken or Sequence", where, i);
        if (get_str(sp, "id", NULL, &name, sub, err) < 0)
            return -1;
        const cJSON *def = cJSON_IsObject(specials) ? field(specials, name) : NULL;
        const cJSON *ids = def ? field(def, "ids") : NULL;
        if (!cJSON_IsArray(ids))
            return bl_fail(err, "%s.special_tokens.%s.ids: missing", where, name);
        for (const cJSON *e = ids->child; e; e = e->next) {
            int id;
            if (as_int(e, &id) < 0 || id >= t->n_vocab)
                return bl_fail(err, "%s.special_tokens.%s.ids: bad token id", where, name);
            if (append_ids(after ? &t->suffix : &t->prefix, after ? &t->n_suffix : &t->n_prefix,
                           &id, 1, err) < 0)
                return -1;
        }
    }
    return 0;
}

static int parse_post(BlTokenizer *t, const cJSON *o, const char *where, BlError *err)
{
    if (!o)
        return 0;
    const char *type;
    if (node_type(o, where, &type, err) < 0)
        return -1;
    if (strcmp(type, "ByteLevel") == 0)
        return 0; /* only adjusts offsets */
    if (strcmp(type, "TemplateProcessing") == 0)
        return parse_template(t, o, where, err);
    if (strcmp(type, "Sequence") == 0) {
        return parse_each(t, o, "processors", where, parse_post, err);
    }
    return bl_fail(err, "%s.type: post-processor \"%s\" is not supported", where, type);
}

/* ---------------------------------------------------------------------------
 * model and added tokens */

/* The id table's size: one past the largest id, which must be below the
 * number of entries (vocab + added tokens), so that a stray huge id cannot
 * size the tables (they are allocated from it) beyond what the file holds. */
static int max_id(const cJSON *vocab, const cJSON *added, int *n, BlError *err)
{
    int m = -1, id, i = 0;
    long long entries = 0;
    const char *where_max = NULL;
    char added_where[64] = "";
    for (const cJSON *c = vocab->child; c; c = c->next, entries++) {
        if (as_int(c, &id) < 0)
            return bl_fail(err, "model.vocab.\"%s\": expected a non-negative integer id", c->string);
        if (id > m) {
            m = id;
            where_max = c->string;
        }
    }
    for (const cJSON *c = added ? added->child : NULL; c; c = c->next, i++, entries++) {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%d]", i);
        if (!cJSON_IsObject(c))
            return bl_fail(err, "%s: expected an object", where);
        const char *content;
        if (get_int(c, "id", -1, &id, where, err) < 0 ||
            get_str(c, "content", NULL, &content, where, err) < 0)
            return -1;
        if (id > m) {
            m = id;
            where_max = NULL;
            snprintf(added_where, sizeof added_where, "%s", where);
        }
    }
    if (m >= entries) {
        if (where_max)
            return bl_fail(err, "model.vocab.\"%.64s\": id %d is out of range (the file has %lld vocab "
                           "and added-token entries; ids must be below that count)", where_max, m, entries);
        return bl_fail(err, "%s.id: %d is out of range (the file has %lld vocab and added-token entries; "
                       "ids must be below that count)", added_where, m, entries);
    }
    /* a repeated entry (the same token and id twice) must not stretch that
     * bound: count each id once (plus the added tokens, which repeat vocab
     * ids in HF files), as in what bl_tokenizer_save_json writes back, so
     * that a tokenizer that loads also loads once saved (found by
     * tests/fuzz/fuzz_tokenizer.c) */
    if (m >= 0) {
        unsigned char *seen = bl_calloc((size_t)m + 1, 1, err); /* m < entries: bounded by the file */
        if (!seen)
            return -1;
        long long distinct = 0;
        for (const cJSON *c = vocab->child; c; c = c->next)
            if (as_int(c, &id) == 0 && !seen[id]) {
                seen[id] = 1;
                distinct++;
            }
        for (const cJSON *c = added ? added->child : NULL; c; c = c->next) {
            const cJSON *v = field(c, "id");
            if (v && as_int(v, &id) == 0 && id <= m && !seen[id]) {
                seen[id] = 1;
                distinct++;
            }
        }
        free(seen);
        if (m >= distinct + i)
            return bl_fail(err, "model.vocab: id %d is out of range (the file has %lld distinct ids and "
                           "%d added tokens; ids must be below that count)", m, distinct, i);
    }
    *n = m + 1;
    return 0;
}

static int parse_merges(BlTokenizer *t, const cJSON *merges, BlError *err)
{
    if (mergemap_init(&t->merges, (size_t)cJSON_GetArraySize(merges), err) < 0)
        return -1;
    int rank = 0;
    for (const cJSON *c = merges->child; c; c = c->next, rank++) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(c)) {
            const char *sp = strchr(c->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return bl_fail(err, "model.merges[%d]: \"%s\" is not two tokens split by one space",
                               rank, c->valuestring);
            a = c->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(c) && cJSON_GetArraySize(c) == 2 && cJSON_IsString(c->child) &&
                   cJSON_IsString(c->child->next)) {
            a = c->child->valuestring;
            la = strlen(a);
            b = c->child->next->valuestring;
            lb = strlen(b);
        } else {
            return bl_fail(err, "model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", rank);
        }
        int ia = tokmap_get(&t->vocab, a, la), ib = tokmap_get(&t->vocab, b, lb);
        if (ia < 0 || ib < 0)
            return bl_fail(err, "model.merges[%d]: token \"%.*s\" is not in model.vocab", rank,
                           ia < 0 ? (int)la : (int)lb, ia < 0 ? a : b);
        char *ab = bl_malloc(la + lb + 1, err);
        if (!ab)
            return -1;
        memcpy(ab, a, la);
        memcpy(ab + la, b, lb);
        int im = tokmap_get(&t->vocab, ab, la + lb);
        if (im < 0) {
            bl_fail(err, "model.merges[%d]: merged token \"%.*s\" is not in model.vocab", rank,
                    (int)(la + lb), ab);
            free(ab);
            return -1;
        }
        free(ab);
        if (mergemap_put(&t->merges, ia, ib, rank, im, err) < 0)
            return -1;
    }
    return 0;
}

static int parse_model(BlTokenizer *t, const cJSON *model, const cJSON *vocab, BlError *err)
{
    const char *type, *unk, *prefix, *suffix;
    const cJSON *merges = field(model, "merges");
    if (get_str(model, "type", "BPE", &type, "model", err) < 0)
        return -1;
    if (strcmp(type, "BPE") != 0)
        return bl_fail(err, "model.type: \"%s\" is not supported (only BPE)", type);
    if (!cJSON_IsArray(merges))
        return bl_fail(err, "model.merges: expected an array");
    if (field(model, "dropout") && !cJSON_IsNumber(field(model, "dropout")))
        return bl_fail(err, "model.dropout: expected a number or null");
    if (get_str(model, "continuing_subword_prefix", "", &prefix, "model", err) < 0 ||
        get_str(model, "end_of_word_suffix", "", &suffix, "model", err) < 0 ||
        get_str(model, "unk_token", "", &unk, "model", err) < 0 ||
        get_bool(model, "byte_fallback", false, &t->byte_fallback, "model", err) < 0 ||
        get_bool(model, "ignore_merges", false, &t->ignore_merges, "model", err) < 0 ||
        get_bool(model, "fuse_unk", false, &t->fuse_unk, "model", err) < 0)
        return -1;
    if (*prefix || *suffix)
        return bl_fail(err, "model.%s: subword affixes are not supported",
                       *prefix ? "continuing_subword_prefix" : "end_of_word_suffix");
    for (const cJSON *c = vocab->child; c; c = c->next) {
        int id = (int)c->valuedouble;
        size_t len = strlen(c->string);
        if (tok_set_token(t, id, c->string, len, err) < 0)
            return bl_fail_prefix(err, "model.vocab");
        if (tokmap_put(&t->vocab, t->tok[id], t->tok_len[id], id, err) < 0)
            return -1;
    }
    if (*unk && (t->unk_id = tokmap_get(&t->vocab, unk, strlen(unk))) < 0)
        return bl_fail(err, "model.unk_token: \"%s\" is not in model.vocab", unk);
    return parse_merges(t, merges, err);
}

static int parse_added(BlTokenizer *t, const cJSON *added, BlError *err)
{
    int i = 0;
    for (const cJSON *c = added ? added->child : NULL; c; c = c->next, i++) {
        char where[64];
        const char *content;
        AddedTok a = {0};
        snprintf(where, sizeof where, "added_tokens[%d]", i);
        if (get_int(c, "id", -1, &a.id, where, err) < 0 ||
            get_str(c, "content", NULL, &content, where, err) < 0 ||
            get_bool(c, "special", false, &a.special, where, err) < 0 ||
            get_bool(c, "lstrip", false, &a.lstrip, where, err) < 0 ||
            get_bool(c, "rstrip", false, &a.rstrip, where, err) < 0 ||
            get_bool(c, "normalized", !a.special, &a.normalized, where, err) < 0 ||
            get_bool(c, "single_word", false, &a.single_word, where, err) < 0)
            return -1;
        a.content = (char *)content;
        a.len = (int)strlen(content);
        if (tok_add_added(t, &a, err) < 0)
            return bl_fail_prefix(err, "%s", where);
    }
    return 0;
}

/* tokenizer_config.json: add_bos_token / add_eos_token and the token names */
static int token_name(const cJSON *cfg, const char *key, const char **out, BlError *err)
{
    const cJSON *v = field(cfg, key);
    *out = NULL;
    if (!v)
        return 0;
    if (cJSON_IsObject(v))
        return get_str(v, "content", NULL, out, key, err);
    if (!cJSON_IsString(v))
        return bl_fail(err, "%s: expected a string or {\"content\": ...}", key);
    *out = v->valuestring;
    return 0;
}

static int apply_config(BlTokenizer *t, const cJSON *cfg, BlError *err)
{
    const char *bos, *eos;
    if (token_name(cfg, "bos_token", &bos, err) < 0 || token_name(cfg, "eos_token", &eos, err) < 0)
        return -1;
    if (bos && (t->bos_id = bl_tokenizer_token_id(t, bos)) < 0)
        return bl_fail(err, "bos_token: \"%s\" is not in the vocabulary", bos);
    if (eos && (t->eos_id = bl_tokenizer_token_id(t, eos)) < 0)
        return bl_fail(err, "eos_token: \"%s\" is not in the vocabulary", eos);
    /* explicit flags rebuild the post-processor, as transformers does */
    const cJSON *ab = field(cfg, "add_bos_token"), *ae = field(cfg, "add_eos_token");
    if ((ab && !cJSON_IsBool(ab)) || (ae && !cJSON_IsBool(ae)))
        return bl_fail(err, "%s: expected true or false", ab && !cJSON_IsBool(ab) ? "add_bos_token"
                                                                                 : "add_eos_token");
    if (ab) {
        if (cJSON_IsTrue(ab) && t->bos_id < 0)
            return bl_fail(err, "add_bos_token: true but there is no bos_token");
        t->n_prefix = 0;
        if (cJSON_IsTrue(ab) && append_ids(&t->prefix, &t->n_prefix, &t->bos_id, 1, err) < 0)
            return -1;
    }
    if (ae) {
        if (cJSON_IsTrue(ae) && t->eos_id < 0)
            return bl_fail(err, "add_eos_token: true but there is no eos_token");
        t->n_suffix = 0;
        if (cJSON_IsTrue(ae) && append_ids(&t->suffix, &t->n_suffix, &t->eos_id, 1, err) < 0)
            return -1;
    }
    return 0;
}

static int build(BlTokenizer **out, const cJSON *root, BlError *err)
{
    const cJSON *model = field(root, "model"), *added = field(root, "added_tokens");
    if (!cJSON_IsObject(root))
        return bl_fail(err, "expected a JSON object at the top level");
    if (!cJSON_IsObject(model))
        return bl_fail(err, "model: missing or not an object");
    const cJSON *vocab = field(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return bl_fail(err, "model.vocab: missing or not an object");
    if (added && !cJSON_IsArray(added))
        return bl_fail(err, "added_tokens: expected an array");
    int n = 0;
    if (max_id(vocab, added, &n, err) < 0 || tok_alloc(out, n, err) < 0)
        return -1;
    BlTokenizer *t = *out;
    if (parse_model(t, model, vocab, err) < 0 || parse_added(t, added, err) < 0 ||
        parse_normalizer(t, field(root, "normalizer"), "normalizer", err) < 0 ||
        parse_pre(t, field(root, "pre_tokenizer"), "pre_tokenizer", err) < 0 ||
        parse_decoder(t, field(root, "decoder"), "decoder", err) < 0 ||
        parse_post(t, field(root, "post_processor"), "post_processor", err) < 0)
        return -1;
    /* without a config, a one-token template names BOS / EOS */
    if (t->n_prefix == 1)
        t->bos_id = t->prefix[0];
    if (t->n_suffix == 1)
        t->eos_id = t->suffix[0];
    return 0;
}

int bl_tokenizer_from_json(BlTokenizer **out, const char *tokenizer_json_path,
                           const char *tokenizer_config_path, BlError *err)
{
    *out = NULL;
    cJSON *root = bl_json_read_file(tokenizer_json_path, err);
    if (!root)
        return -1;
    BlTokenizer *t = NULL;
    int rc = build(&t, root, err);
    cJSON_Delete(root);
    if (rc < 0) {
        bl_tokenizer_free(t);
        return bl_fail_prefix(err, "%s", tokenizer_json_path);
    }
    if (tokenizer_config_path) {
        cJSON *cfg = bl_json_read_file(tokenizer_config_path, err);
        if (!cfg) {
            bl_tokenizer_free(t);
            return -1;
        }
        rc = apply_config(t, cfg, err);
        cJSON_Delete(cfg);
        if (rc < 0) {
            bl_tokenizer_free(t);
            return bl_fail_prefix(err, "%s", tokenizer_config_path);
        }
    }
    if (tok_finish(t, err) < 0) {
        bl_tokenizer_free(t);
        return bl_fail_prefix(err, "%s", tokenizer_json_path);
    }
    *out = t;
    return 0;
}
