/* tok_internal.h - the tokenizer's private data model, shared by the loaders
 * (load_json.c, load_gguf.c) and the pipeline stages (normalize, pre-tokenize,
 * BPE, decode). Mirrors the Hugging Face `tokenizers` pipeline:
 * added-token split -> normalizer -> pre-tokenizer -> BPE -> post-processor. */
#ifndef BITLAB_TOK_INTERNAL_H
#define BITLAB_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

/* ---- string -> id map (open addressing; keys point into BlTokenizer.tok) */
typedef struct {
    const char *s;
    int len;
    int id; /* -1 marks an empty slot */
} TokSlot;

typedef struct {
    TokSlot *slots;
    size_t cap; /* power of two */
    size_t n;
} TokMap;

int tokmap_init(TokMap *m, size_t expected, BlError *err);
void tokmap_free(TokMap *m);
/* Inserts or overwrites; s must outlive the map. */
int tokmap_put(TokMap *m, const char *s, int len, int id, BlError *err);
int tokmap_get(const TokMap *m, const char *s, size_t len); /* id or -1 */

/* ---- (left id, right id) -> merge rank and result */
typedef struct {
    uint64_t key; /* UINT64_MAX marks an empty slot */
    int rank, merged;
} MergeSlot;

typedef struct {
    MergeSlot *slots;
    size_t cap, n;
} MergeMap;

int mergemap_init(MergeMap *m, size_t expected, BlError *err);
void mergemap_free(MergeMap *m);
/* A pair listed twice keeps its last rank, as HF's HashMap insert does. */
int mergemap_put(MergeMap *m, int a, int b, int rank, int merged, BlError *err);
const MergeSlot *mergemap_get(const MergeMap *m, int a, int b);

/* ---- growable byte buffer and piece lists */
typedef struct {
    char *p;
    size_t len, cap;
} TokBuf;

int tokbuf_add(TokBuf *b, const char *s, size_t n, BlError *err);

typedef struct {
    char *s; /* owned, NUL-terminated */
    size_t len;
    bool at_start; /* begins at offset 0 of the original text (Metaspace "first") */
} Piece;

typedef struct {
    Piece *v;
    int n, cap;
} PieceList;

int pieces_push(PieceList *l, const char *s, size_t len, bool at_start, BlError *err);
void pieces_free(PieceList *l);

/* ---- normalizers */
typedef enum { NORM_NFC, NORM_PREPEND, NORM_REPLACE } NormKind;
typedef struct {
    NormKind kind;
    char *a, *b; /* PREPEND: a = prefix; REPLACE: a = pattern, b = content */
} NormStep;

/* ---- pre-tokenizers */
/* Digits is a SPLIT on \p{N} or \p{N}+, as HF's char::is_numeric. */
typedef enum { PRE_SPLIT, PRE_BYTE_LEVEL, PRE_METASPACE } PreKind;
typedef enum { SPLIT_ISOLATED, SPLIT_REMOVED } SplitBehavior;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } PrependScheme;
typedef struct {
    PreKind kind;
    pcre2_code *re;          /* SPLIT; BYTE_LEVEL when use_regex */
    char *pattern;           /* SPLIT: re's source text, kept so save_json.c can write it */
    bool literal;            /* SPLIT: pattern is a plain string, not a regex */
    SplitBehavior behavior;  /* SPLIT */
    bool invert;             /* SPLIT */
    bool add_prefix_space;   /* BYTE_LEVEL */
    char *replacement;       /* METASPACE */
    PrependScheme scheme;    /* METASPACE */
    bool split;              /* METASPACE */
} PreStep;

/* ---- decoders */
typedef enum { DEC_BYTE_LEVEL, DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP } DecKind;
typedef struct {
    DecKind kind;
    char *a, *b;      /* REPLACE: pattern, content; STRIP: a = content char */
    int start, stop;  /* STRIP */
} DecStep;

typedef struct {
    char *content;
    int len, id;
    bool special, lstrip, rstrip, normalized, single_word;
} AddedTok;

struct BlTokenizer {
    int n_vocab;
    char **tok;   /* by id; NULL for ids nobody defined */
    int *tok_len;
    bool *special; /* by id: dropped by decode(skip_special) */
    TokMap vocab;  /* model vocabulary */
    MergeMap merges;
    bool byte_fallback, ignore_merges, fuse_unk;
    int unk_id;
    int byte_tok[256]; /* ids of "<0xXX>", -1 if absent */

    AddedTok *added;
    int n_added;

    NormStep *norm;
    int n_norm;
    PreStep *pre;
    int n_pre;
    DecStep *dec;
    int n_dec;
    bool has_decoder; /* without one HF joins tokens with spaces */

    int *prefix, n_prefix, *suffix, n_suffix; /* post-processor, single sequence */
    int bos_id, eos_id;
    char *bos_text, *eos_text;
};

/* tokenizer.c */
int tok_alloc(BlTokenizer **out, int n_vocab, BlError *err);
/* Sets token id's text (copied). */
int tok_set_token(BlTokenizer *t, int id, const char *s, size_t len, BlError *err);
/* Builds t->vocab from t->tok and finds byte-fallback tokens. */
int tok_index_vocab(BlTokenizer *t, BlError *err);
int tok_add_added(BlTokenizer *t, const AddedTok *a, BlError *err);
/* Fills bos/eos text from their ids. */
int tok_finish(BlTokenizer *t, BlError *err);

/* byte_level.c */
/* UTF-8 of the GPT-2 printable stand-in for byte b (1 or 2 bytes); returns its length. */
int byte_level_encode_byte(unsigned char b, char out[2]);
/* The byte a code point stands for, or -1 if it is not in the GPT-2 alphabet. */
int byte_level_decode_cp(uint32_t cp);

/* utf8.c */
/* Decodes one code point at s[0..n); returns its length (1..4), or 0 if invalid. */
int utf8_next(const char *s, size_t n, uint32_t *cp);
/* Appends bytes, replacing invalid sequences with U+FFFD as Rust's from_utf8_lossy does. */
int utf8_append_lossy(TokBuf *out, const char *s, size_t n, BlError *err);
bool utf8_valid(const char *s, size_t n);

/* normalize.c */
int normalize_apply(const BlTokenizer *t, const char *s, size_t n, TokBuf *out, BlError *err);
void norm_step_free(NormStep *s);

/* pretokenize.c */
/* literal: match the pattern as plain text (HF Split with a String pattern) */
pcre2_code *pretok_compile(const char *pattern, size_t len, bool literal, BlError *err);
int pretokenize(const BlTokenizer *t, PieceList *pieces, BlError *err);
void pre_step_free(PreStep *s);
extern const char *const PRETOK_GPT2_REGEX;
extern const char *const PRETOK_LLAMA3_REGEX;
extern const char *const PRETOK_QWEN2_REGEX;

/* bpe.c */
/* Tokenizes one pre-token, appending ids. */
int bpe_encode_piece(const BlTokenizer *t, const char *s, size_t n, int **ids, int *n_ids,
                     int *cap, BlError *err);

/* decode.c */
int decode_tokens(const BlTokenizer *t, char **toks, size_t *lens, int n, TokBuf *out,
                  BlError *err);
void dec_step_free(DecStep *s);

#endif
