/* decode.c - HF decoders over the list of token strings: ByteLevel (back to
 * bytes, then lossy UTF-8), Replace, ByteFallback (<0xXX> runs -> UTF-8, or
 * one U+FFFD per byte when invalid), Fuse and Strip. Without a decoder HF
 * joins the tokens with spaces. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

typedef struct {
    TokBuf *v;
    int n;
} StrList;

static void strlist_free(StrList *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i].p);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Appends a copy of s to l (l->v has room for the input count). */
static int strlist_add(StrList *l, const char *s, size_t n, BlError *err)
{
    TokBuf b = {0};
    if (tokbuf_add(&b, s, n, err) < 0)
        return -1;
    l->v[l->n++] = b;
    return 0;
}

static int dec_byte_level(const StrList *in, StrList *out, BlError *err)
{
    TokBuf bytes = {0}, text = {0};
    int rc = tokbuf_add(&bytes, "", 0, err);
    for (int i = 0; i < in->n && rc == 0; i++) {
        const TokBuf *t = &in->v[i];
        size_t start = bytes.len, j = 0;
        bool all = true;
        while (j < t->len && rc == 0) {
            uint32_t cp;
            int k = utf8_next(t->p + j, t->len - j, &cp);
            int b = k ? byte_level_decode_cp(cp) : -1;
            if (b < 0) {
                all = false;
                break;
            }
            char c = (char)b;
            rc = tokbuf_add(&bytes, &c, 1, err);
            j += (size_t)k;
        }
        if (rc == 0 && !all) { /* a token outside the alphabet passes through as is */
            bytes.len = start;
            rc = tokbuf_add(&bytes, t->p, t->len, err);
        }
    }
    if (rc == 0)
        rc = tokbuf_add(&text, "", 0, err);
    if (rc == 0)
        rc = utf8_append_lossy(&text, bytes.p, bytes.len, err);
    free(bytes.p);
    if (rc < 0) {
        free(text.p);
        return -1;
    }
    out->v[out->n++] = text;
    return 0;
}

static int replace_all(const TokBuf *t, const char *pat, const char *with, TokBuf *o, BlError *err)
{
    size_t pl = strlen(pat), wl = strlen(with), i = 0;
    if (tokbuf_add(o, "", 0, err) < 0)
        return -1;
    while (i < t->len) {
        bool hit = pl && i + pl <= t->len && memcmp(t->p + i, pat, pl) == 0;
        if (tokbuf_add(o, hit ? with : t->p + i, hit ? wl : 1, err) < 0)
            return -1;
        i += hit ? pl : 1;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int byte_token(const TokBuf *t)
{
    if (t->len != 6 || memcmp(t->p, "<0x", 3) != 0 || t->p[5] != '>')
        return -1;
    int h = hexval(t->p[3]), l = hexval(t->p[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static int flush_bytes(TokBuf *pending, StrList *out, BlError *err)
{
    if (pending->len == 0)
        return 0;
    TokBuf b = {0};
    int rc = 0;
    if (utf8_valid(pending->p, pending->len)) {
        rc = tokbuf_add(&b, pending->p, pending->len, err);
    } else {
        for (size_t i = 0; i < pending->len && rc == 0; i++)
            rc = tokbuf_add(&b, "\xEF\xBF\xBD", 3, err);
    }
    pending->len = 0;
    if (rc < 0) {
        free(b.p);
        return -1;
    }
    out->v[out->n++] = b;
    return 0;
}

static int dec_byte_fallback(const StrList *in, StrList *out, BlError *err)
{
    TokBuf pending = {0};
    int rc = 0;
    for (int i = 0; i < in->n && rc == 0; i++) {
        int b = byte_token(&in->v[i]);
        if (b >= 0) {
            char c = (char)b;
            rc = tokbuf_add(&pending, &c, 1, err);
        } else {
            rc = flush_bytes(&pending, out, err);
            if (rc == 0)
                rc = strlist_add(out, in->v[i].p, in->v[i].len, err);
        }
    }
    if (rc == 0)
        rc = flush_bytes(&pending, out, err);
    free(pending.p);
    return rc;
}

static int dec_strip(const DecStep *st, const StrList *in, StrList *out, BlError *err)
{
    size_t cl = strlen(st->a);
    for (int i = 0; i < in->n; i++) {
        const TokBuf *t = &in->v[i];
        size_t s = 0, e = t->len;
        for (int k = 0; k < st->start && s + cl <= e && memcmp(t->p + s, st->a, cl) == 0; k++)
            s += cl;
        for (int k = 0; k < st->stop && e >= s + cl && memcmp(t->p + e - cl, st->a, cl) == 0; k++)
            e -= cl;
        if (strlist_add(out, t->p + s, e - s, err) < 0)
            return -1;
    }
    return 0;
}

static int dec_step(const DecStep *st, const StrList *in, StrList *out, BlError *err)
{
    switch (st->kind) {
    case DEC_BYTE_LEVEL:
        return dec_byte_level(in, out, err);
    case DEC_BYTE_FALLBACK:
        return dec_byte_fallback(in, out, err);
    case DEC_STRIP:
        return dec_strip(st, in, out, err);
    case DEC_REPLACE:
        for (int i = 0; i < in->n; i++) {
            TokBuf o = {0};
            if (replace_all(&in->v[i], st->a, st->b, &o, err) < 0) {
                free(o.p);
                return -1;
            }
            out->v[out->n++] = o;
        }
        return 0;
    case DEC_FUSE: {
        TokBuf o = {0};
        int rc = tokbuf_add(&o, "", 0, err);
        for (int i = 0; i < in->n && rc == 0; i++)
            rc = tokbuf_add(&o, in->v[i].p, in->v[i].len, err);
        if (rc < 0) {
            free(o.p);
            return -1;
        }
        out->v[out->n++] = o;
        return 0;
    }
    }
    return bl_fail(err, "unknown decoder step");
}

int decode_tokens(const BlTokenizer *t, char **toks, size_t *lens, int n, TokBuf *out, BlError *err)
{
    StrList cur = {0};
    int rc = 0;
    cur.v = bl_calloc((size_t)n + 1, sizeof *cur.v, err);
    if (!cur.v)
        return -1;
    for (int i = 0; i < n && rc == 0; i++)
        rc = strlist_add(&cur, toks[i], lens[i], err);
    for (int s = 0; s < t->n_dec && rc == 0; s++) {
        /* no step makes more strings than it gets */
        StrList next = {bl_calloc((size_t)cur.n + 1, sizeof(TokBuf), err), 0};
        rc = next.v ? dec_step(&t->dec[s], &cur, &next, err) : -1;
        strlist_free(&cur);
        cur = next;
    }
    for (int i = 0; i < cur.n && rc == 0; i++) {
        if (i > 0 && !t->has_decoder)
            rc = tokbuf_add(out, " ", 1, err);
        if (rc == 0)
            rc = tokbuf_add(out, cur.v[i].p, cur.v[i].len, err);
    }
    if (rc == 0)
        rc = tokbuf_add(out, "", 0, err);
    strlist_free(&cur);
    return rc;
}

void dec_step_free(DecStep *s)
{
    free(s->a);
    free(s->b);
}
