/* load_gguf.c - builds a BlTokenizer from GGUF tokenizer.ggml.* metadata:
 * "gpt2" (byte-level BPE, split regex chosen by tokenizer.ggml.pre) and
 * "llama" (SentencePiece BPE with byte fallback; merges rebuilt from the
 * scores the way transformers' GGUF conversion does). Control tokens become
 * special added tokens, user-defined ones plain added tokens. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "tokenizer/tok_internal.h"

enum { TT_CONTROL = 3, TT_USER_DEFINED = 4 };

static const BlGgufKV *array_kv(const BlGguf *g, const char *key, BlGgufType elem, uint64_t n,
                                BlError *err)
{
    const BlGgufKV *kv = bl_gguf_find(g, key);
    if (!kv)
        return NULL;
    if (kv->type != BL_GGUF_ARRAY || kv->v.arr.type != elem) {
        bl_fail(err, "%s: expected an array of %s", key, bl_gguf_type_name(elem));
        return NULL;
    }
    if (n && kv->v.arr.n != n) {
        bl_fail(err, "%s: has %llu entries for %llu tokens", key, (unsigned long long)kv->v.arr.n,
                (unsigned long long)n);
        return NULL;
    }
    return kv;
}

static int get_bool_or(const BlGguf *g, const char *key, bool dflt, bool *out, BlError *err)
{
    const BlGgufKV *kv = bl_gguf_find(g, key);
    if (!kv) {
        *out = dflt;
        return 0;
    }
    if (kv->type != BL_GGUF_BOOL)
        return bl_fail(err, "%s: expected a bool, found %s", key, bl_gguf_type_name(kv->type));
    *out = kv->v.u != 0;
    return 0;
}

static int get_id_or(const BlGguf *g, const char *key, int n_vocab, int *out, BlError *err)
{
    uint64_t v;
    if (bl_gguf_get_u64_or(g, key, UINT64_MAX, &v, err) < 0)
        return -1;
    if (v == UINT64_MAX) {
        *out = -1;
        return 0;
    }
    if (v >= (uint64_t)n_vocab)
        return bl_fail(err, "%s: token id %llu is outside the vocabulary (%d)", key,
                       (unsigned long long)v, n_vocab);
    *out = (int)v;
    return 0;
}

static bool in_byte_alphabet(const char *s, size_t n)
{
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        int k = utf8_next(s + i, n - i, &cp);
        if (!k || byte_level_decode_cp(cp) < 0)
            return false;
        i += (size_t)k;
    }
    return true;
}

/* Byte-level vocabularies spell every token in the GPT-2 alphabet; a token
 * that doesn't is spelled out byte by byte, as transformers does. */
static int set_gpt2_token(BlTokenizer *t, int id, const char *s, size_t n, BlError *err)
{
    if (in_byte_alphabet(s, n))
        return tok_set_token(t, id, s, n, err);
    TokBuf b = {0};
    int rc = tokbuf_add(&b, "", 0, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char enc[2];
        int k = byte_level_encode_byte((unsigned char)s[i], enc);
        rc = tokbuf_add(&b, enc, (size_t)k, err);
    }
    if (rc == 0)
        rc = tok_set_token(t, id, b.p, b.len, err);
    free(b.p);
    return rc;
}

static int gpt2_merges(BlTokenizer *t, const BlGgufKV *kv, BlError *err)
{
    if (mergemap_init(&t->merges, kv->v.arr.n, err) < 0)
        return -1;
    for (uint64_t r = 0; r < kv->v.arr.n; r++) {
        BlGgufStr m = kv->v.arr.strs[r];
        const char *sp = memchr(m.ptr, ' ', m.len);
        if (!sp)
            return bl_fail(err, "tokenizer.ggml.merges[%llu]: no space in \"%.*s\"",
                           (unsigned long long)r, (int)m.len, m.ptr);
        size_t la = (size_t)(sp - m.ptr), lb = m.len - la - 1;
        int a = tokmap_get(&t->vocab, m.ptr, la), b = tokmap_get(&t->vocab, sp + 1, lb);
        char *ab = bl_malloc(la + lb + 1, err);
        if (!ab)
            return -1;
        memcpy(ab, m.ptr, la);
        memcpy(ab + la, sp + 1, lb);
        int ib = tokmap_get(&t->vocab, ab, la + lb);
        free(ab);
        if (a < 0 || b < 0 || ib < 0)
            return bl_fail(err, "tokenizer.ggml.merges[%llu]: \"%.*s\" names a token not in "
                                "tokenizer.ggml.tokens", (unsigned long long)r, (int)m.len, m.ptr);
        if (mergemap_put(&t->merges, a, b, (int)r, ib, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- SentencePiece: merges from scores (transformers' generate_merges) */

typedef struct {
    int l, r, merged, nl, nr; /* nl, nr: lengths in code points */
    float score;
    long seq; /* emission order, for a stable sort */
} Cand;

static int cand_cmp(const void *pa, const void *pb)
{
    const Cand *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    if (a->nl != b->nl)
        return a->nl > b->nl ? -1 : 1;
    if (a->nr != b->nr)
        return a->nr > b->nr ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

static int cand_local_cmp(const void *pa, const void *pb)
{
    const Cand *a = pa, *b = pb;
    if (a->l != b->l)
        return (a->l > b->l) - (a->l < b->l);
    return (a->r > b->r) - (a->r < b->r);
}

static int spm_merges(BlTokenizer *t, const float *scores, BlError *err)
{
    Cand *c = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (int id = 0; id < t->n_vocab && rc == 0; id++) {
        const char *s = t->tok[id];
        size_t len = (size_t)t->tok_len[id];
        /* the first spelling of a duplicated token carries the score of the last */
        if (tokmap_get(&t->vocab, s, len) != id)
            continue;
        size_t first = n, i = 0;
        int nl = 0, total = 0;
        uint32_t cp;
        for (size_t j = 0; j < len;) {
            int k = utf8_next(s + j, len - j, &cp);
            j += k ? (size_t)k : 1;
            total++;
        }
        while (i < len) {
            int k = utf8_next(s + i, len - i, &cp);
            i += k ? (size_t)k : 1;
            nl++;
            if (i >= len)
                break;
            int l = tokmap_get(&t->vocab, s, i), r = tokmap_get(&t->vocab, s + i, len - i);
            if (l < 0 || r < 0)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 4096;
                Cand *p = realloc(c, cap * sizeof *p);
                if (!p) {
                    rc = bl_fail(err, "out of memory (merges)");
                    break;
                }
                c = p;
            }
            float score; /* the mapping may be unaligned (GGUF metadata arrays are packed) */
            memcpy(&score, (const char *)scores + (size_t)id * sizeof score, sizeof score);
            c[n++] = (Cand){l, r, id, nl, total - nl, score, 0};
        }
        if (n - first > 1)
            qsort(c + first, n - first, sizeof *c, cand_local_cmp);
    }
    for (size_t i = 0; i < n; i++)
        c[i].seq = (long)i;
    if (rc == 0 && n)
        qsort(c, n, sizeof *c, cand_cmp);
    if (rc == 0)
        rc = mergemap_init(&t->merges, n, err);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = mergemap_put(&t->merges, c[i].l, c[i].r, (int)i, c[i].merged, err);
    free(c);
    return rc;
}

/* ---- pipeline per model */

static int add_pre(BlTokenizer *t, PreStep st, BlError *err)
{
    PreStep *v = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *v);
    if (!v) {
        pre_step_free(&st);
        return bl_fail(err, "out of memory");
    }
    t->pre = v;
    t->pre[t->n_pre++] = st;
    return 0;
}

static int add_dec(BlTokenizer *t, DecKind kind, const char *a, const char *b, BlError *err)
{
    DecStep st = {.kind = kind, .start = 1};
    if ((a && !(st.a = strdup(a))) || (b && !(st.b = strdup(b)))) {
        dec_step_free(&st);
        return bl_fail(err, "out of memory");
    }
    DecStep *v = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *v);
    if (!v) {
        dec_step_free(&st);
        return bl_fail(err, "out of memory");
    }
    t->dec = v;
    t->dec[t->n_dec++] = st;
    t->has_decoder = true;
    return 0;
}

static int add_norm(BlTokenizer *t, NormKind kind, const char *a, const char *b, BlError *err)
{
    NormStep st = {.kind = kind};
    if ((a && !(st.a = strdup(a))) || (b && !(st.b = strdup(b)))) {
        norm_step_free(&st);
        return bl_fail(err, "out of memory");
    }
    NormStep *v = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *v);
    if (!v) {
        norm_step_free(&st);
        return bl_fail(err, "out of memory");
    }
    t->norm = v;
    t->norm[t->n_norm++] = st;
    return 0;
}

static int regex_step(BlTokenizer *t, PreKind kind, const char *re, BlError *err)
{
    PreStep st = {.kind = kind};
    if (re && !(st.re = pretok_compile(re, strlen(re), false, err)))
        return -1;
    if (kind == PRE_SPLIT && !(st.pattern = strdup(re))) {
        pre_step_free(&st);
        return bl_fail(err, "out of memory");
    }
    return add_pre(t, st, err);
}

static int gpt2_pipeline(BlTokenizer *t, const BlGguf *g, BlError *err)
{
    BlGgufStr pre = {"default", 7};
    const BlGgufKV *kv = bl_gguf_find(g, "tokenizer.ggml.pre");
    if (kv && bl_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err) < 0)
        return -1;
#define PRE_IS(name) (pre.len == strlen(name) && memcmp(pre.ptr, name, pre.len) == 0)
    int rc;
    if (PRE_IS("default") || PRE_IS("gpt2")) {
        rc = regex_step(t, PRE_BYTE_LEVEL, PRETOK_GPT2_REGEX, err);
    } else if (PRE_IS("smollm")) { /* as llama.cpp and SmolLM's tokenizer.json: digits apart */
        rc = regex_step(t, PRE_SPLIT, "\\p{N}", err);
        if (rc == 0)
            rc = regex_step(t, PRE_BYTE_LEVEL, PRETOK_GPT2_REGEX, err);
    } else if (PRE_IS("llama-bpe") || PRE_IS("llama3") || PRE_IS("llama-v3")) {
        rc = regex_step(t, PRE_SPLIT, PRETOK_LLAMA3_REGEX, err);
        if (rc == 0)
            rc = regex_step(t, PRE_BYTE_LEVEL, NULL, err);
    } else if (PRE_IS("qwen2")) {
        rc = add_norm(t, NORM_NFC, NULL, NULL, err);
        if (rc == 0)
            rc = regex_step(t, PRE_SPLIT, PRETOK_QWEN2_REGEX, err);
        if (rc == 0)
            rc = regex_step(t, PRE_BYTE_LEVEL, NULL, err);
    } else {
        return bl_fail(err, "tokenizer.ggml.pre: \"%.*s\" is not supported (gpt2, smollm, "
                            "llama-bpe, llama3, qwen2)", (int)pre.len, pre.ptr);
    }
#undef PRE_IS
    return rc < 0 ? -1 : add_dec(t, DEC_BYTE_LEVEL, NULL, NULL, err);
}

/* transformers' LlamaTokenizer: Metaspace (prepend on the first piece only),
 * or for phi3 the Prepend + Replace normalizer. */
static int spm_pipeline(BlTokenizer *t, const BlGguf *g, BlError *err)
{
    bool prefix = true;
    BlGgufStr arch = {"", 0};
    if (get_bool_or(g, "tokenizer.ggml.add_space_prefix", true, &prefix, err) < 0)
        return -1;
    if (bl_gguf_find(g, "general.architecture") &&
        bl_gguf_get_str(g, "general.architecture", &arch, err) < 0)
        return -1;
    const char *sp = "\xE2\x96\x81";
    int rc;
    if (arch.len == 4 && memcmp(arch.ptr, "phi3", 4) == 0) {
        prefix = true;
        rc = add_norm(t, NORM_PREPEND, sp, NULL, err);
        if (rc == 0)
            rc = add_norm(t, NORM_REPLACE, " ", sp, err);
    } else {
        PreStep st = {.kind = PRE_METASPACE, .scheme = prefix ? PREPEND_FIRST : PREPEND_NEVER};
        if (!(st.replacement = strdup(sp)))
            return bl_fail(err, "out of memory");
        rc = add_pre(t, st, err);
    }
    if (rc == 0)
        rc = add_dec(t, DEC_REPLACE, sp, " ", err);
    if (rc == 0)
        rc = add_dec(t, DEC_BYTE_FALLBACK, NULL, NULL, err);
    if (rc == 0)
        rc = add_dec(t, DEC_FUSE, NULL, NULL, err);
    if (rc == 0 && prefix)
        rc = add_dec(t, DEC_STRIP, " ", NULL, err);
    return rc;
}

static int build(BlTokenizer **out, const BlGguf *g, BlError *err)
{
    BlGgufStr model;
    if (bl_gguf_get_str(g, "tokenizer.ggml.model", &model, err) < 0)
        return -1;
    bool gpt2 = model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0;
    bool llama = model.len == 5 && memcmp(model.ptr, "llama", 5) == 0;
    if (!gpt2 && !llama)
        return bl_fail(err, "tokenizer.ggml.model: \"%.*s\" is not supported (gpt2, llama)",
                       (int)model.len, model.ptr);
    const BlGgufKV *toks = array_kv(g, "tokenizer.ggml.tokens", BL_GGUF_STRING, 0, err);
    if (!toks)
        return bl_gguf_find(g, "tokenizer.ggml.tokens") ? -1
                                                        : bl_fail(err, "tokenizer.ggml.tokens: missing");
    if (toks->v.arr.n == 0 || toks->v.arr.n > (1u << 24))
        return bl_fail(err, "tokenizer.ggml.tokens: %llu tokens", (unsigned long long)toks->v.arr.n);
    int n = (int)toks->v.arr.n;
    const BlGgufKV *types = array_kv(g, "tokenizer.ggml.token_type", BL_GGUF_INT32, (uint64_t)n, err);
    const BlGgufKV *merges = array_kv(g, "tokenizer.ggml.merges", BL_GGUF_STRING, 0, err);
    const BlGgufKV *scores = array_kv(g, "tokenizer.ggml.scores", BL_GGUF_FLOAT32, (uint64_t)n, err);
    if ((!types && bl_gguf_find(g, "tokenizer.ggml.token_type")) ||
        (!merges && bl_gguf_find(g, "tokenizer.ggml.merges")) ||
        (!scores && bl_gguf_find(g, "tokenizer.ggml.scores")))
        return -1;
    if (gpt2 && !merges)
        return bl_fail(err, "tokenizer.ggml.merges: missing (required for gpt2)");
    if (llama && !merges && !scores)
        return bl_fail(err, "tokenizer.ggml.scores: missing (needed to rebuild merges)");
    if (tok_alloc(out, n, err) < 0)
        return -1;
    BlTokenizer *t = *out;
    for (int i = 0; i < n; i++) {
        BlGgufStr s = toks->v.arr.strs[i];
        int rc = gpt2 ? set_gpt2_token(t, i, s.ptr, s.len, err) : tok_set_token(t, i, s.ptr, s.len, err);
        if (rc < 0 || tokmap_put(&t->vocab, t->tok[i], t->tok_len[i], i, err) < 0)
            return bl_fail_prefix(err, "tokenizer.ggml.tokens[%d]", i);
    }
    bool add_bos = false, add_eos = false;
    if (get_id_or(g, "tokenizer.ggml.bos_token_id", n, &t->bos_id, err) < 0 ||
        get_id_or(g, "tokenizer.ggml.eos_token_id", n, &t->eos_id, err) < 0 ||
        get_id_or(g, "tokenizer.ggml.unknown_token_id", n, &t->unk_id, err) < 0 ||
        get_bool_or(g, "tokenizer.ggml.add_bos_token", llama, &add_bos, err) < 0 ||
        get_bool_or(g, "tokenizer.ggml.add_eos_token", false, &add_eos, err) < 0)
        return -1;
    if (llama) {
        t->byte_fallback = t->fuse_unk = true;
        if (t->unk_id < 0)
            t->unk_id = tokmap_get(&t->vocab, "<unk>", 5);
    } else {
        t->unk_id = -1; /* byte-level BPE never needs one */
    }
    /* the named bos/eos/unk tokens are special too, as in transformers */
    int named[3] = {t->bos_id, t->eos_id, t->unk_id};
    for (int k = 0; k < 3; k++) {
        AddedTok a = {.id = named[k], .special = true};
        if (a.id < 0 || t->special[a.id])
            continue;
        a.content = t->tok[a.id];
        a.len = t->tok_len[a.id];
        if (tok_add_added(t, &a, err) < 0)
            return bl_fail_prefix(err, "tokenizer.ggml.tokens[%d]", a.id);
    }
    const int32_t *tt = types ? types->v.arr.data : NULL;
    for (int i = 0; tt && i < n; i++) {
        int32_t ty;
        memcpy(&ty, tt + i, sizeof ty); /* the mapping may be unaligned */
        bool control = ty == TT_CONTROL && (!gpt2 || in_byte_alphabet(t->tok[i], (size_t)t->tok_len[i]));
        if ((!control && ty != TT_USER_DEFINED) || t->special[i])
            continue;
        AddedTok a = {.content = t->tok[i], .len = t->tok_len[i], .id = i, .special = control};
        if (tok_add_added(t, &a, err) < 0)
            return bl_fail_prefix(err, "tokenizer.ggml.tokens[%d]", i);
    }
    if (merges ? gpt2_merges(t, merges, err) : spm_merges(t, scores->v.arr.data, err))
        return -1;
    if ((add_bos && t->bos_id < 0) || (add_eos && t->eos_id < 0))
        return bl_fail(err, "tokenizer.ggml.add_%s_token: set but the token id is missing",
                       add_bos && t->bos_id < 0 ? "bos" : "eos");
    if (add_bos && !(t->prefix = bl_malloc(sizeof(int), err)))
        return -1;
    if (add_bos)
        t->prefix[t->n_prefix++] = t->bos_id;
    if (add_eos && !(t->suffix = bl_malloc(sizeof(int), err)))
        return -1;
    if (add_eos)
        t->suffix[t->n_suffix++] = t->eos_id;
    return gpt2 ? gpt2_pipeline(t, g, err) : spm_pipeline(t, g, err);
}

int bl_tokenizer_from_gguf(BlTokenizer **out, const struct BlGguf *g, BlError *err)
{
    BlTokenizer *t = NULL;
    *out = NULL;
    if (build(&t, g, err) < 0 || tok_finish(t, err) < 0) {
        bl_tokenizer_free(t);
        return bl_fail_prefix(err, "%s", g->path);
    }
    *out = t;
    return 0;
}
