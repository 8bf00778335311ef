/* utf8.c - UTF-8 decoding and the lossy conversion HF's decoders end with
 * (Rust String::from_utf8_lossy: each maximal invalid subpart becomes one
 * U+FFFD). */
#include "tokenizer/tok_internal.h"

/* Length of the valid prefix of a sequence starting at s (0 if s[0] can't
 * start one), following the Unicode "maximal subpart" rules. */
static int utf8_valid_prefix(const unsigned char *s, size_t n, int *need)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        *need = 1;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF)
        *need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        *need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        *need = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        *need = 0;
        return 0;
    }
    int k = 1;
    while (k < *need && (size_t)k < n) {
        unsigned d = s[k];
        if (d < lo || d > hi)
            break;
        lo = 0x80;
        hi = 0xBF;
        k++;
    }
    return k;
}

int utf8_next(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    int need;
    int k = utf8_valid_prefix(u, n, &need);
    if (need == 0 || k < need)
        return 0;
    if (need == 1)
        *cp = u[0];
    else if (need == 2)
        *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    else if (need == 3)
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    else
        *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
              ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    return need;
}

bool utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        int k = utf8_next(s + i, n - i, &cp);
        if (!k)
            return false;
        i += (size_t)k;
    }
    return true;
}

int utf8_append_lossy(TokBuf *out, const char *s, size_t n, BlError *err)
{
    size_t i = 0;
    while (i < n) {
        int need;
        int k = utf8_valid_prefix((const unsigned char *)s + i, n - i, &need);
        if (need > 0 && k == need) {
            if (tokbuf_add(out, s + i, (size_t)k, err) < 0)
                return -1;
        } else {
            if (tokbuf_add(out, "\xEF\xBF\xBD", 3, err) < 0)
                return -1;
            if (k == 0)
                k = 1;
        }
        i += (size_t)k;
    }
    return 0;
}
