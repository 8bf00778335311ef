/* normalize.c - the normalizers the supported families use: NFC (Qwen2,
 * through ICU), Prepend and Replace (the Llama-2 "▁" normalizer). Each step
 * rewrites the whole segment, in order. */
#include <stdlib.h>
#include <string.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "tokenizer/tok_internal.h"

static int nfc(TokBuf *b, BlError *err)
{
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *n2 = unorm2_getNFCInstance(&st);
    if (U_FAILURE(st))
        return bl_fail(err, "NFC normalizer unavailable: %s", u_errorName(st));
    if (b->len > (size_t)INT32_MAX / 4)
        return bl_fail(err, "text too long to normalize (%zu bytes)", b->len);
    int32_t n16 = 0;
    st = U_ZERO_ERROR;
    u_strFromUTF8(NULL, 0, &n16, b->p, (int32_t)b->len, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st))
        return bl_fail(err, "NFC: invalid UTF-8 input");
    UChar *src = bl_malloc(((size_t)n16 + 1) * sizeof(UChar), err);
    UChar *dst = src ? bl_malloc(((size_t)n16 * 3 + 1) * sizeof(UChar), err) : NULL;
    char *out = NULL;
    int rc = -1;
    if (!dst)
        goto done;
    st = U_ZERO_ERROR;
    u_strFromUTF8(src, n16 + 1, NULL, b->p, (int32_t)b->len, &st);
    int32_t nd = U_SUCCESS(st) ? unorm2_normalize(n2, src, n16, dst, n16 * 3 + 1, &st) : 0;
    int32_t n8 = 0;
    if (U_SUCCESS(st)) {
        u_strToUTF8(NULL, 0, &n8, dst, nd, &st);
        if (st == U_BUFFER_OVERFLOW_ERROR)
            st = U_ZERO_ERROR;
    }
    if (U_FAILURE(st)) {
        bl_fail(err, "NFC normalization failed: %s", u_errorName(st));
        goto done;
    }
    out = bl_malloc((size_t)n8 + 1, err);
    if (!out)
        goto done;
    u_strToUTF8(out, n8 + 1, NULL, dst, nd, &st);
    b->len = 0;
    rc = tokbuf_add(b, out, (size_t)n8, err);
done:
    free(src);
    free(dst);
    free(out);
    return rc;
}

static int replace(TokBuf *b, const char *pat, const char *with, BlError *err)
{
    size_t pl = strlen(pat), wl = strlen(with);
    if (pl == 0)
        return 0;
    TokBuf o = {0};
    size_t i = 0;
    while (i < b->len) {
        if (i + pl <= b->len && memcmp(b->p + i, pat, pl) == 0) {
            if (tokbuf_add(&o, with, wl, err) < 0)
                goto fail;
            i += pl;
        } else {
            if (tokbuf_add(&o, b->p + i, 1, err) < 0)
                goto fail;
            i++;
        }
    }
    if (tokbuf_add(&o, "", 0, err) < 0)
        goto fail;
    free(b->p);
    *b = o;
    return 0;
fail:
    free(o.p);
    return -1;
}

static int prepend(TokBuf *b, const char *pre, BlError *err)
{
    if (b->len == 0)
        return 0; /* HF prepends only to non-empty text */
    TokBuf o = {0};
    if (tokbuf_add(&o, pre, strlen(pre), err) < 0 || tokbuf_add(&o, b->p, b->len, err) < 0) {
        free(o.p);
        return -1;
    }
    free(b->p);
    *b = o;
    return 0;
}

int normalize_apply(const BlTokenizer *t, const char *s, size_t n, TokBuf *out, BlError *err)
{
    out->len = 0;
    if (tokbuf_add(out, s, n, err) < 0)
        return -1;
    for (int i = 0; i < t->n_norm; i++) {
        const NormStep *st = &t->norm[i];
        int rc = st->kind == NORM_NFC       ? nfc(out, err)
                 : st->kind == NORM_PREPEND ? prepend(out, st->a, err)
                                            : replace(out, st->a, st->b, err);
        if (rc < 0)
            return -1;
    }
    return 0;
}

void norm_step_free(NormStep *s)
{
    free(s->a);
    free(s->b);
}
