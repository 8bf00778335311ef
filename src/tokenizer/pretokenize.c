/* pretokenize.c - HF pre-tokenizers: regex Split (Isolated / Removed),
 * ByteLevel (optional GPT-2 regex, then bytes -> printable code points),
 * Digits (as a \p{N} split) and Metaspace. Each step maps the piece list to
 * a new one, in order. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

const char *const PRETOK_GPT2_REGEX =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char *const PRETOK_LLAMA3_REGEX =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const PRETOK_QWEN2_REGEX =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

pcre2_code *pretok_compile(const char *pattern, size_t len, bool literal, BlError *err)
{
    int ec;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        bl_fail(err, "bad pre-tokenizer regex at offset %zu: %s", (size_t)off, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up; interpreter otherwise */
    return re;
}

/* Splits every piece of in by re, appending to out. */
static int split_regex(const PreStep *st, const PieceList *in, PieceList *out, BlError *err)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(st->re, NULL);
    if (!md)
        return bl_fail(err, "out of memory (regex match data)");
    int rc = 0;
    for (int i = 0; i < in->n && rc == 0; i++) {
        const Piece *p = &in->v[i];
        size_t pos = 0, gap = 0; /* gap: start of text not yet emitted */
        bool first = p->at_start;
        while (rc == 0 && pos <= p->len) {
            int m = pcre2_match(st->re, (PCRE2_SPTR)p->s, p->len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            if (m == PCRE2_ERROR_NOMATCH)
                break;
            if (m < 0) {
                rc = bl_fail(err, "pre-tokenizer regex failed (PCRE2 error %d)", m);
                break;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms) { /* empty match: skip one code point */
                uint32_t cp;
                int k = ms < p->len ? utf8_next(p->s + ms, p->len - ms, &cp) : 1;
                pos = ms + (size_t)(k ? k : 1);
                continue;
            }
            /* the gap before the match, then the match; a delimiter is the
             * match, or with invert the gap */
            bool keep_gap = !(st->invert && st->behavior == SPLIT_REMOVED);
            bool keep_match = st->invert || st->behavior == SPLIT_ISOLATED;
            if (ms > gap && keep_gap) {
                rc = pieces_push(out, p->s + gap, ms - gap, first, err);
                first = false;
            }
            if (rc == 0 && keep_match) {
                rc = pieces_push(out, p->s + ms, me - ms, first && ms == 0, err);
                first = false;
            }
            gap = pos = me;
        }
        if (rc == 0 && gap < p->len && !(st->invert && st->behavior == SPLIT_REMOVED))
            rc = pieces_push(out, p->s + gap, p->len - gap, first && gap == 0, err);
    }
    pcre2_match_data_free(md);
    return rc;
}

static int byte_level(const PreStep *st, const PieceList *in, PieceList *out, BlError *err)
{
    PieceList tmp = {0};
    const PieceList *src = in;
    int rc = 0;
    if (st->add_prefix_space) {
        for (int i = 0; i < in->n && rc == 0; i++) {
            const Piece *p = &in->v[i];
            if (p->len && p->s[0] == ' ') {
                rc = pieces_push(&tmp, p->s, p->len, p->at_start, err);
            } else {
                TokBuf b = {0};
                rc = tokbuf_add(&b, " ", 1, err);
                if (rc == 0)
                    rc = tokbuf_add(&b, p->s, p->len, err);
                if (rc == 0)
                    rc = pieces_push(&tmp, b.p, b.len, p->at_start, err);
                free(b.p);
            }
        }
        src = &tmp;
    }
    PieceList split = {0};
    if (rc == 0 && st->re) {
        rc = split_regex(st, src, &split, err);
        src = &split;
    }
    for (int i = 0; i < src->n && rc == 0; i++) {
        TokBuf b = {0};
        for (size_t j = 0; j < src->v[i].len && rc == 0; j++) {
            char enc[2];
            int k = byte_level_encode_byte((unsigned char)src->v[i].s[j], enc);
            rc = tokbuf_add(&b, enc, (size_t)k, err);
        }
        if (rc == 0)
            rc = pieces_push(out, b.p ? b.p : "", b.len, src->v[i].at_start, err);
        free(b.p);
    }
    pieces_free(&tmp);
    pieces_free(&split);
    return rc;
}

static int metaspace(const PreStep *st, const PieceList *in, PieceList *out, BlError *err)
{
    const char *rep = st->replacement;
    size_t rl = strlen(rep);
    int rc = 0;
    for (int i = 0; i < in->n && rc == 0; i++) {
        const Piece *p = &in->v[i];
        TokBuf b = {0};
        for (size_t j = 0; j < p->len && rc == 0; j++)
            rc = p->s[j] == ' ' ? tokbuf_add(&b, rep, rl, err) : tokbuf_add(&b, p->s + j, 1, err);
        if (rc == 0)
            rc = tokbuf_add(&b, "", 0, err);
        bool starts = b.len >= rl && memcmp(b.p, rep, rl) == 0;
        bool want = st->scheme == PREPEND_ALWAYS || (st->scheme == PREPEND_FIRST && p->at_start);
        if (rc == 0 && want && !starts && b.len > 0) {
            TokBuf c = {0};
            rc = tokbuf_add(&c, rep, rl, err);
            if (rc == 0)
                rc = tokbuf_add(&c, b.p, b.len, err);
            free(b.p);
            b = c;
        }
        if (rc == 0 && !st->split) {
            rc = pieces_push(out, b.p, b.len, p->at_start, err);
        } else if (rc == 0) { /* each replacement starts a new piece */
            size_t s = 0;
            bool first = p->at_start;
            for (size_t j = 1; j <= b.len && rc == 0; j++) {
                if (j == b.len || (j + rl <= b.len && memcmp(b.p + j, rep, rl) == 0)) {
                    rc = pieces_push(out, b.p + s, j - s, first, err);
                    first = false;
                    s = j;
                }
            }
        }
        free(b.p);
    }
    return rc;
}

int pretokenize(const BlTokenizer *t, PieceList *pieces, BlError *err)
{
    for (int i = 0; i < t->n_pre; i++) {
        const PreStep *st = &t->pre[i];
        PieceList out = {0};
        int rc = st->kind == PRE_SPLIT        ? split_regex(st, pieces, &out, err)
                 : st->kind == PRE_BYTE_LEVEL ? byte_level(st, pieces, &out, err)
                                              : metaspace(st, pieces, &out, err);
        pieces_free(pieces);
        *pieces = out;
        if (rc < 0)
            return -1;
    }
    return 0;
}

void pre_step_free(PreStep *s)
{
    pcre2_code_free(s->re);
    free(s->pattern);
    free(s->replacement);
}
