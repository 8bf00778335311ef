/* tokenizer.c - the encode/decode pipeline shared by both loaders:
 * split out added/special tokens (raw text first, then normalized text, as
 * HF's AddedVocabulary does), normalize, pre-tokenize, BPE each piece, and
 * wrap with the post-processor's BOS/EOS. Also owns construction helpers
 * and the public accessors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ---------------------------------------------------------------------------
 * construction */

int tok_alloc(BlTokenizer **out, int n_vocab, BlError *err)
{
    *out = NULL;
    if (n_vocab <= 0)
        return bl_fail(err, "empty vocabulary");
    BlTokenizer *t = bl_calloc(1, sizeof *t, err);
    if (!t)
        return -1;
    t->n_vocab = n_vocab;
    t->unk_id = t->bos_id = t->eos_id = -1;
    t->tok = bl_calloc((size_t)n_vocab, sizeof *t->tok, err);
    t->tok_len = t->tok ? bl_calloc((size_t)n_vocab, sizeof *t->tok_len, err) : NULL;
    t->special = t->tok_len ? bl_calloc((size_t)n_vocab, sizeof *t->special, err) : NULL;
    if (!t->special || tokmap_init(&t->vocab, (size_t)n_vocab, err) < 0) {
        bl_tokenizer_free(t);
        return -1;
    }
    for (int b = 0; b < 256; b++)
        t->byte_tok[b] = -1;
    *out = t;
    return 0;
}

int tok_set_token(BlTokenizer *t, int id, const char *s, size_t len, BlError *err)
{
    if (id < 0 || id >= t->n_vocab)
        return bl_fail(err, "token id %d out of range 0..%d", id, t->n_vocab - 1);
    if (len > (size_t)1 << 20)
        return bl_fail(err, "token %d is %zu bytes long", id, len);
    if (t->tok[id]) {
        if ((size_t)t->tok_len[id] == len && memcmp(t->tok[id], s, len) == 0)
            return 0;
        return bl_fail(err, "token id %d is given to both \"%s\" and \"%.*s\"", id, t->tok[id],
                       (int)len, s);
    }
    char *c = bl_malloc(len + 1, err);
    if (!c)
        return -1;
    memcpy(c, s, len);
    c[len] = '\0';
    t->tok[id] = c;
    t->tok_len[id] = (int)len;
    return 0;
}

int tok_add_added(BlTokenizer *t, const AddedTok *a, BlError *err)
{
    if (a->len == 0)
        return bl_fail(err, "added token %d has empty content", a->id);
    if (tok_set_token(t, a->id, a->content, (size_t)a->len, err) < 0)
        return -1;
    AddedTok *v = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *v);
    if (!v)
        return bl_fail(err, "out of memory (added tokens)");
    t->added = v;
    AddedTok c = *a;
    c.content = t->tok[a->id]; /* shares the vocabulary's copy */
    t->added[t->n_added++] = c;
    if (a->special)
        t->special[a->id] = true;
    return 0;
}

static char *dup_token(const BlTokenizer *t, int id, BlError *err)
{
    if (id < 0 || id >= t->n_vocab || !t->tok[id])
        return NULL;
    char *s = bl_malloc((size_t)t->tok_len[id] + 1, err);
    if (s)
        memcpy(s, t->tok[id], (size_t)t->tok_len[id] + 1);
    return s;
}

int tok_finish(BlTokenizer *t, BlError *err)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_tok[b] = tokmap_get(&t->vocab, name, 6);
    }
    if (t->bos_id >= 0 && !t->bos_text && !(t->bos_text = dup_token(t, t->bos_id, err)))
        return bl_fail(err, "bos token id %d is not in the vocabulary", t->bos_id);
    if (t->eos_id >= 0 && !t->eos_text && !(t->eos_text = dup_token(t, t->eos_id, err)))
        return bl_fail(err, "eos token id %d is not in the vocabulary", t->eos_id);
    return 0;
}

void bl_tokenizer_free(BlTokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; t->tok && i < t->n_vocab; i++)
        free(t->tok[i]);
    free(t->tok);
    free(t->tok_len);
    free(t->special);
    tokmap_free(&t->vocab);
    mergemap_free(&t->merges);
    free(t->added);
    for (int i = 0; i < t->n_norm; i++)
        norm_step_free(&t->norm[i]);
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++)
        pre_step_free(&t->pre[i]);
    free(t->pre);
    for (int i = 0; i < t->n_dec; i++)
        dec_step_free(&t->dec[i]);
    free(t->dec);
    free(t->prefix);
    free(t->suffix);
    free(t->bos_text);
    free(t->eos_text);
    free(t);
}

/* ---------------------------------------------------------------------------
 * added-token matching */

typedef struct {
    int *v, n, cap;
} IdVec;

static int idvec_push(IdVec *iv, int id, BlError *err)
{
    if (iv->n == iv->cap) {
        int c = iv->cap ? iv->cap * 2 : 64;
        int *p = realloc(iv->v, (size_t)c * sizeof *p);
        if (!p)
            return bl_fail(err, "out of memory (%d token ids)", c);
        iv->v = p;
        iv->cap = c;
    }
    iv->v[iv->n++] = id;
    return 0;
}

/* Rust's char::is_whitespace (Unicode White_Space). */
static bool is_ws(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* code point ending just before s[i] */
static uint32_t cp_before(const char *s, size_t i, size_t *start)
{
    size_t j = i;
    do
        j--;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80);
    uint32_t cp = 0xFFFD;
    utf8_next(s + j, i - j, &cp);
    *start = j;
    return cp;
}

static bool is_word(uint32_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (c >= 0x80 && !is_ws(c));
}

typedef struct {
    size_t start, end; /* span consumed, lstrip/rstrip whitespace included */
    int id;
} AddedMatch;

/* Leftmost-longest match at or after pos among the added tokens whose
 * normalized flag equals `normalized`; false when there is none. */
static bool find_added(const BlTokenizer *t, const char *s, size_t n, size_t pos, size_t last_stop,
                       bool normalized, AddedMatch *m)
{
    for (size_t p = pos; p < n; p++) {
        const AddedTok *best = NULL;
        for (int k = 0; k < t->n_added; k++) {
            const AddedTok *a = &t->added[k];
            if (a->normalized != normalized || (size_t)a->len > n - p || (best && a->len <= best->len))
                continue;
            if (memcmp(s + p, a->content, (size_t)a->len) == 0)
                best = a;
        }
        if (!best)
            continue;
        size_t start = p, end = p + (size_t)best->len, j;
        uint32_t cp;
        if (best->single_word) {
            bool before = start > 0 && is_word(cp_before(s, start, &j));
            bool after = end < n && utf8_next(s + end, n - end, &cp) && is_word(cp);
            if (before || after)
                continue;
        }
        if (best->lstrip) {
            while (start > last_stop && is_ws(cp_before(s, start, &j)) && j >= last_stop)
                start = j;
        }
        if (best->rstrip) {
            int k;
            while (end < n && (k = utf8_next(s + end, n - end, &cp)) && is_ws(cp))
                end += (size_t)k;
        }
        *m = (AddedMatch){start, end, best->id};
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------------------
 * encode */

/* Normalized text without added tokens: pre-tokenize and run BPE. */
static int encode_model(const BlTokenizer *t, const char *s, size_t n, bool at_start, IdVec *ids,
                        BlError *err)
{
    PieceList pl = {0};
    int rc = pieces_push(&pl, s, n, at_start, err);
    if (rc == 0)
        rc = pretokenize(t, &pl, err);
    for (int i = 0; i < pl.n && rc == 0; i++)
        rc = bpe_encode_piece(t, pl.v[i].s, pl.v[i].len, &ids->v, &ids->n, &ids->cap, err);
    pieces_free(&pl);
    return rc;
}

/* Splits s on added tokens of one kind; plain stretches go to the next stage. */
static int encode_split(const BlTokenizer *t, const char *s, size_t n, bool at_start,
                        bool normalized, IdVec *ids, BlError *err);

static int encode_plain(const BlTokenizer *t, const char *s, size_t n, bool at_start,
                        bool normalized, IdVec *ids, BlError *err)
{
    if (n == 0)
        return 0;
    if (normalized)
        return encode_model(t, s, n, at_start, ids, err);
    TokBuf nb = {0};
    int rc = normalize_apply(t, s, n, &nb, err);
    if (rc == 0)
        rc = encode_split(t, nb.p, nb.len, at_start, true, ids, err);
    free(nb.p);
    return rc;
}

static int encode_split(const BlTokenizer *t, const char *s, size_t n, bool at_start,
                        bool normalized, IdVec *ids, BlError *err)
{
    size_t pos = 0;
    AddedMatch m;
    while (find_added(t, s, n, pos, pos, normalized, &m)) {
        if (encode_plain(t, s + pos, m.start - pos, at_start && pos == 0, normalized, ids, err) < 0 ||
            idvec_push(ids, m.id, err) < 0)
            return -1;
        pos = m.end;
    }
    return encode_plain(t, s + pos, n - pos, at_start && pos == 0, normalized, ids, err);
}

int bl_tokenizer_encode(const BlTokenizer *t, const char *text, size_t len, bool add_special,
                        int **ids, int *n_ids, BlError *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!utf8_valid(text, len))
        return bl_fail(err, "tokenizer input is not valid UTF-8");
    IdVec iv = {0};
    int rc = 0;
    for (int i = 0; add_special && i < t->n_prefix && rc == 0; i++)
        rc = idvec_push(&iv, t->prefix[i], err);
    if (rc == 0)
        rc = encode_split(t, text, len, true, false, &iv, err);
    for (int i = 0; add_special && i < t->n_suffix && rc == 0; i++)
        rc = idvec_push(&iv, t->suffix[i], err);
    if (rc == 0 && !iv.v) { /* the caller always gets an allocation to free */
        iv.v = bl_malloc(sizeof *iv.v, err);
        rc = iv.v ? 0 : -1;
    }
    if (rc < 0) {
        free(iv.v);
        return -1;
    }
    *ids = iv.v;
    *n_ids = iv.n;
    return 0;
}

/* ---------------------------------------------------------------------------
 * decode and accessors */

int bl_tokenizer_decode(const BlTokenizer *t, const int *ids, int n_ids, bool skip_special,
                        char **text, BlError *err)
{
    *text = NULL;
    char **toks = bl_calloc((size_t)n_ids + 1, sizeof *toks, err);
    size_t *lens = toks ? bl_calloc((size_t)n_ids + 1, sizeof *lens, err) : NULL;
    if (!lens) {
        free(toks);
        return -1;
    }
    int n = 0, rc = 0;
    for (int i = 0; i < n_ids; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->n_vocab || !t->tok[id]) {
            rc = bl_fail(err, "token id %d is not in the vocabulary (size %d)", id, t->n_vocab);
            break;
        }
        if (skip_special && t->special[id])
            continue;
        toks[n] = t->tok[id];
        lens[n++] = (size_t)t->tok_len[id];
    }
    TokBuf out = {0};
    if (rc == 0)
        rc = decode_tokens(t, toks, lens, n, &out, err);
    free(toks);
    free(lens);
    if (rc < 0) {
        free(out.p);
        return -1;
    }
    *text = out.p;
    return 0;
}

int bl_tokenizer_vocab_size(const BlTokenizer *t)
{
    return t->n_vocab;
}

int bl_tokenizer_token_id(const BlTokenizer *t, const char *piece)
{
    size_t len = strlen(piece);
    for (int i = 0; i < t->n_added; i++)
        if ((size_t)t->added[i].len == len && memcmp(t->added[i].content, piece, len) == 0)
            return t->added[i].id;
    return tokmap_get(&t->vocab, piece, len);
}

int bl_tokenizer_bos_id(const BlTokenizer *t)
{
    return t->bos_id;
}

int bl_tokenizer_eos_id(const BlTokenizer *t)
{
    return t->eos_id;
}

const char *bl_tokenizer_bos_text(const BlTokenizer *t)
{
    return t->bos_text;
}

const char *bl_tokenizer_eos_text(const BlTokenizer *t)
{
    return t->eos_text;
}
